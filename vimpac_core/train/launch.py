"""Launch a training stage under torchrun as a subprocess, streaming its output line by line.

torchrun runs in a new process group (session) and starts its ranks in sessions of their own; on
timeout, cancellation or any exception in the caller the group and every descendant process are
sent SIGTERM, then SIGKILL after a grace period, so no rank outlives its task. While torchrun runs
(when launched from the main thread), SIGTERM and SIGINT to this process kill the group first and
then do what they did before (Prefect's handler, KeyboardInterrupt, or the default exit): an
orchestrator's cancel (a process worker SIGTERMs the flow-run process) never orphans a rank. On
Linux torchrun gets PDEATHSIG=SIGKILL, and each rank sets it too (`die_with_parent`), so a launcher
killed outright takes torchrun and the ranks with it.

Failures: a rank that raises writes ``<output>/failure-rank<N>.json`` (`record_failure`). If one
of them is permanent (bad config, bad data, a bug) the stage fails with TrainingFailed; any other
non-zero exit (a rank killed by preemption or the OOM killer, a lost peer) is TrainingInterrupted.
TrainingTimeout and TrainingInterrupted are retriable and carry ``resume_from``: the stage's latest
checkpoint when it was written with this same config (`resume_point`), else None.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from vimpac_core.errors import PermanentError, TransientError
from vimpac_core.storage import atomic_write_bytes
from vimpac_core.train.checkpoint import resumable_checkpoint
from vimpac_core.train.config import TrainConfigBase
from vimpac_core.train.failures import FAILURE_PREFIX, describe_failure, die_with_parent, read_failures

# Config keys that may differ between a checkpoint's run and the run resuming it.
RESUME_IGNORES = {"resume", "log_every", "keep_checkpoints", "node_rank", "rdzv_endpoint", "rdzv_id"}
METRICS_WAIT_S = 60.0  # on several nodes, how long a launcher waits for global rank 0's metrics.json


class TrainingFailed(PermanentError):
    """torchrun exited non-zero. The message is one line: the first rank error (type and message)
    when a rank reported one, else the exit code; ``tail`` holds the last lines of output."""

    tail: str = ""


class TrainingTimeout(TransientError):
    """The stage ran past its time limit and was killed (retriable: resume continues it)."""

    resume_from: Path | None = None


class TrainingInterrupted(TransientError):
    """torchrun failed with no permanent error from any rank: a rank was killed (preemption, OOM
    killer) or lost its peers. Retriable: resume continues from ``resume_from``."""

    resume_from: Path | None = None


class TrainingCancelled(PermanentError):
    """The stage was cancelled and its process group killed."""


def torchrun_command(config_file: str | Path, nproc_per_node: int, module: str = "vimpac_core.train.pretrain", *,
                     nnodes: int = 1, node_rank: int | str = 0, rdzv_endpoint: str | None = None,
                     rdzv_id: str = "vimpac") -> list[str]:
    # The one place the torchrun command line is built (entry modules: TrainConfigBase.ENTRY).
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m MODULE --config FILE``; with a
    ``rdzv_endpoint``, one node of ``nnodes`` at a c10d rendezvous instead of ``--standalone``."""
    if rdzv_endpoint is None:
        where = ["--standalone", "--nnodes", "1"]
    else:
        where = ["--nnodes", str(nnodes), "--node_rank", str(node_rank), "--rdzv_backend", "c10d",
                 "--rdzv_endpoint", rdzv_endpoint, "--rdzv_id", rdzv_id]
    return [
        sys.executable, "-m", "torch.distributed.run", *where,
        "--nproc_per_node", str(nproc_per_node), "--max_restarts", "0",
        "-m", module, "--config", str(config_file),
    ]


def stage_command(config_file: str | Path, config: TrainConfigBase) -> list[str]:
    """The torchrun command of ``config``: its entry module, ranks per node and (when set) rendezvous."""
    nodes = {k: getattr(config, k) for k in ("nnodes", "node_rank", "rdzv_endpoint", "rdzv_id") if hasattr(config, k)}
    return torchrun_command(config_file, config.nproc_per_node, config.ENTRY, **nodes)


def write_stage_config(config: TrainConfigBase) -> Path:
    """Store the stage's config as ``<output>/run_config.json`` (what the ranks read)."""
    path = Path(config.output) / "run_config.json"
    atomic_write_bytes(str(path), (json.dumps(config.to_flat(), indent=1) + "\n").encode())  # unique temp names:
    return path  # nodes sharing the output write it too


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
        start_new_session=True, preexec_fn=die_with_parent if sys.platform == "linux" else None,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd,
    )
    try:
        with _kill_on_signals(proc):
            if on_start is not None:
                on_start(proc)
            code, tail = _stream(proc, on_line, timeout_s, cancel)
    finally:
        if proc.poll() is None or _group_alive(proc.pid) or _tree(proc.pid):
            kill_group(proc)
    if code != 0:
        failed = TrainingFailed(f"torchrun exited with code {code} (last output line: {tail[-1] if tail else ''!r})")
        failed.tail = "\n".join(tail)
        raise failed
    return 0


def _stream(
    proc: subprocess.Popen, on_line: Callable[[str], None], timeout_s: float | None, cancel: threading.Event | None
) -> tuple[int, deque[str]]:
    """Hand ``proc``'s output to ``on_line`` until it exits; -> (exit code, last 30 lines)."""
    lines: queue.Queue[str | None] = queue.Queue()
    tail: deque[str] = deque(maxlen=30)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # text mode: universal newlines, so tqdm's \r updates are lines too
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
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
    return proc.wait(), tail


@contextlib.contextmanager
def _kill_on_signals(proc: subprocess.Popen, grace_s: float = 10.0) -> Iterator[None]:
    """While inside: SIGTERM / SIGINT kill ``proc``'s group and descendants, then run the handler
    that was installed before (Prefect's raises in the flow, SIGINT's raises KeyboardInterrupt,
    the default one ends the process). Signal handlers belong to the main thread: elsewhere this
    does nothing, and the ranks' PDEATHSIG covers a launcher that dies."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, object] = {}

    def handler(signum: int, frame: object) -> None:
        kill_group(proc, grace_s)
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        elif before != signal.SIG_IGN:  # default (or not set from Python): end the process as it would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before if before is not None else signal.SIG_DFL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def resume_point(config: TrainConfigBase) -> Path | None:
    """The stage's latest checkpoint when it was written by this same config (`RESUME_IGNORES` aside)."""
    return resumable_checkpoint(config.checkpoint_dir, config.to_flat(), RESUME_IGNORES)


def launch_stage(
    config: TrainConfigBase,
    *,
    on_line: Callable[[str], None] = print,
    timeout_s: float | None = None,
    cancel: threading.Event | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """Write the stage config, run torchrun with ``nproc_per_node`` ranks of the config's entry module
    (``config.ENTRY``), return metrics.json.

    Raises TrainingFailed (permanent: the first rank error was permanent, or no metrics were written),
    TrainingInterrupted / TrainingTimeout (retriable, with ``resume_from``) or TrainingCancelled.
    """
    path = write_stage_config(config)
    metrics_file = Path(config.output) / "metrics.json"
    metrics_file.unlink(missing_ok=True)
    for old in Path(config.output).glob(f"{FAILURE_PREFIX}*.json"):
        old.unlink(missing_ok=True)
    command = stage_command(path, config)
    try:
        run_streaming(command, on_line=on_line, timeout_s=timeout_s, cancel=cancel, env=env)
    except TrainingTimeout as err:
        err.resume_from = resume_point(config)
        raise
    except TrainingFailed as err:
        failures = read_failures(config.output)
        # The first error raised is the cause; the others are usually its echo (a lost peer).
        if failures and failures[0].get("permanent"):
            failed = TrainingFailed(describe_failure(failures[0]))
            failed.tail = err.tail
            raise failed from None
        cause = describe_failure(failures[0]) if failures else str(err)
        interrupted = TrainingInterrupted(f"training was interrupted, retriable: {cause}")
        interrupted.resume_from = resume_point(config)
        raise interrupted from None
    nodes = getattr(config, "nnodes", 1)
    if not _wait_for(metrics_file, METRICS_WAIT_S if nodes > 1 else 0.0):  # rank 0 may be on another node
        shared = f" (with {nodes} nodes, output must be a folder every node shares)" if nodes > 1 else ""
        raise TrainingFailed(f"torchrun finished but wrote no {metrics_file}{shared}; see the stage output")
    return json.loads(metrics_file.read_text())


def _wait_for(path: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True
