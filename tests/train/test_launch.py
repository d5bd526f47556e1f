"""The subprocess launcher: line streaming, exit codes, and killing the whole group on timeout/cancel."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from vimpac_core.train.launch import (
    TrainingCancelled,
    TrainingFailed,
    TrainingTimeout,
    run_streaming,
    torchrun_command,
)

# A parent that starts a grandchild in the same group, reports its pid, then both sleep.
SLEEPER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('child', child.pid, flush=True)\n"
    "print('progress\\r50%\\r100%', flush=True)\n"
    "time.sleep(60)\n"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _run_and_stop(**kwargs) -> tuple[list[str], int]:
    lines: list[str] = []
    with pytest.raises((TrainingTimeout, TrainingCancelled)):
        run_streaming([sys.executable, "-c", SLEEPER], on_line=lines.append, **kwargs)
    child = int(next(line for line in lines if line.startswith("child")).split()[1])
    return lines, child


def test_timeout_kills_the_whole_process_group():
    started = time.monotonic()
    lines, child = _run_and_stop(timeout_s=3)
    assert time.monotonic() - started < 30
    assert ["progress", "50%", "100%"] == [line for line in lines if not line.startswith("child")]
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_cancel_kills_the_whole_process_group():
    cancel = threading.Event()
    threading.Timer(2.0, cancel.set).start()
    _, child = _run_and_stop(cancel=cancel)
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_failure_carries_exit_code_and_tail():
    with pytest.raises(TrainingFailed, match=r"code 3[\s\S]*boom"):
        run_streaming([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], on_line=lambda _: None)
    assert run_streaming([sys.executable, "-c", "print('ok')"], on_line=lambda _: None) == 0


def test_torchrun_command_shape():
    cmd = torchrun_command("/x/run.json", 2)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[cmd.index("--nproc_per_node") + 1] == "2" and cmd[-2:] == ["--config", "/x/run.json"]


def test_failure_records_class_errors_a_rerun_would_raise_again_as_permanent(tmp_path):
    import torch

    from vimpac_core.errors import TransientDownloadError
    from vimpac_core.train.failures import read_failures, record_failure

    errors = [torch.OutOfMemoryError("CUDA out of memory"), ValueError("bad flag"), RuntimeError("NCCL timeout"),
              TransientDownloadError("503")]
    for rank, err in enumerate(errors):
        record_failure(tmp_path, rank, err)
    got = {r["type"]: r["permanent"] for r in read_failures(tmp_path)}
    assert got == {"OutOfMemoryError": True, "ValueError": True, "RuntimeError": False, "TransientDownloadError": False}
