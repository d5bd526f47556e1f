"""What a training rank and its launcher share about the rank's life: a rank dies with its parent
(`die_with_parent`), and a rank that raises leaves ``<output>/failure-rank<N>.json``
(`record_failure`) that the launcher reads back (`read_failures`) to tell a permanent failure from
an interruption. The rank side (train/worker.py) imports only this module, not the launcher.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from vimpac_core.errors import VimpacError
from vimpac_core.storage import atomic_write_bytes

FAILURE_PREFIX = "failure-rank"
# Exceptions a rerun would raise again: never retried. Out of memory counts: the same batch on the
# same card runs out again (lower bs_per_gpu, raise gradient_accumulation).
# Missing files and index errors (a token id past the vocabulary) come back the same way too.
PERMANENT_TYPES = (ValueError, TypeError, LookupError, AttributeError, ImportError, NotImplementedError, AssertionError,
                   MemoryError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
PERMANENT_NAMES = {"OutOfMemoryError"}  # torch.OutOfMemoryError (a RuntimeError), named: no torch import here


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (PR_SET_PDEATHSIG); no-op elsewhere.

    Used between fork and exec of torchrun, and by each rank at start-up (torchrun starts ranks
    in sessions of their own, so nothing else would reach them if torchrun were killed outright).
    A rank whose torchrun died before this call fails on its own: it cannot reach torchrun's store.
    """
    if sys.platform != "linux":
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def record_failure(output: str | Path, rank: int, err: BaseException) -> None:
    """Rank side: write ``<output>/failure-rank<N>.json`` (type, message, permanent) for the launcher."""
    if isinstance(err, VimpacError):
        permanent = not err.retriable
    else:
        permanent = isinstance(err, PERMANENT_TYPES) or type(err).__name__ in PERMANENT_NAMES
    message = " ".join(str(err).split())[:2000]  # one line: it becomes the command's last line
    record = {"rank": rank, "type": type(err).__name__, "message": message, "permanent": permanent, "time": time.time()}
    try:
        atomic_write_bytes(str(Path(output, f"{FAILURE_PREFIX}{rank}.json")), (json.dumps(record) + "\n").encode())
    except OSError:
        pass  # the exception itself still reaches torchrun's log


def read_failures(output: str | Path) -> list[dict]:
    """The failure records the ranks of the last launch wrote, first raised first (empty when none)."""
    records = []
    for path in sorted(Path(output).glob(f"{FAILURE_PREFIX}*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: (r.get("time", 0.0), r.get("rank", 0)))


def describe_failure(record: dict) -> str:
    """'rank 1 raised IndexError: index out of range in self' (one line)."""
    return f"rank {record.get('rank')} raised {record.get('type')}: {record.get('message')}"
