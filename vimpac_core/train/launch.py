"""Launch a training stage under torchrun as a subprocess, streaming its output line by line.

torchrun runs in a new process group (session) and starts its ranks in sessions of their own; on
timeout, cancellation or any exception in the caller (Ctrl-C, an orchestrator's cancel) the group
and every descendant process are sent SIGTERM, then SIGKILL after a grace period, so no rank
outlives its task. On Linux torchrun also gets
PDEATHSIG=SIGKILL, so it dies if the launching process is killed outright.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import psutil

from vimpac_core.errors import PermanentError, TransientError
from vimpac_core.train.config import PretrainConfig


class TrainingFailed(PermanentError):
    """torchrun exited non-zero; the message holds the exit code and the last lines of output."""


class TrainingTimeout(TransientError):
    """The stage ran past its time limit and was killed (retriable: --resume continues it)."""


class TrainingCancelled(PermanentError):
    """The stage was cancelled and its process group killed."""


def torchrun_command(config_file: str | Path, nproc_per_node: int, module: str = "vimpac_core.train.pretrain") -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m MODULE --config FILE``."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
        "--nproc_per_node", str(nproc_per_node), "--max_restarts", "0",
        "-m", module, "--config", str(config_file),
    ]


def write_stage_config(config: PretrainConfig) -> Path:
    """Store the stage's config as ``<output>/run_config.json`` (what the ranks read)."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run_config.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config.to_flat(), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``pid``'s process group and to every descendant of ``pid``.

    torchrun starts its ranks in sessions of their own, so the group alone does not reach them.
    """
    procs = _tree(pid)
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def kill_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM ``proc``, its group and its descendants; SIGKILL whatever is left after ``grace_s``."""
    procs = _tree(proc.pid)
    kill_tree(proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    psutil.wait_procs(alive, timeout=5)
    proc.poll()


def run_streaming(
    command: list[str],
    *,
    on_line: Callable[[str], None] = print,
    timeout_s: float | None = None,
    cancel: threading.Event | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> int:
    """Run ``command`` in its own process group; every output line (\\n or \\r ended) goes to ``on_line``.

    Returns 0 on success. Raises TrainingTimeout after ``timeout_s`` seconds, TrainingCancelled
    when ``cancel`` is set, TrainingFailed on a non-zero exit; the group is killed in all cases.
    """
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd,
    )
    if on_start is not None:
        on_start(proc)
    lines: queue.Queue[str | None] = queue.Queue()
    tail: deque[str] = deque(maxlen=30)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # text mode: universal newlines, so tqdm's \r updates are lines too
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                tail.append(line)
                on_line(line)
            if cancel is not None and cancel.is_set():
                raise TrainingCancelled(f"training cancelled; killed process group {proc.pid}")
            if deadline is not None and time.monotonic() > deadline:
                raise TrainingTimeout(f"training ran past {timeout_s:.0f} s; killed process group {proc.pid}")
        code = proc.wait()
    finally:
        if proc.poll() is None or _group_alive(proc.pid) or _tree(proc.pid):
            kill_group(proc)
    if code != 0:
        raise TrainingFailed(f"torchrun exited with code {code}; last output:\n" + "\n".join(tail))
    return 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def launch_stage(
    config: PretrainConfig,
    *,
    on_line: Callable[[str], None] = print,
    timeout_s: float | None = None,
    cancel: threading.Event | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Write the stage config, run torchrun with ``nproc_per_node`` ranks, return metrics.json."""
    path = write_stage_config(config)
    metrics_file = Path(config.output) / "metrics.json"
    metrics_file.unlink(missing_ok=True)
    run_streaming(
        torchrun_command(path, config.nproc_per_node), on_line=on_line, timeout_s=timeout_s, cancel=cancel, env=env
    )
    if not metrics_file.is_file():
        raise TrainingFailed(f"torchrun finished but wrote no {metrics_file}; see the stage output")
    return json.loads(metrics_file.read_text())
