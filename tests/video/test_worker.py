"""Decoder worker processes: reuse, recycling, and no leaks when callers die or are daemons."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import time

import psutil
import pytest

from vimpac_core.video import live_worker_pids, probe, shutdown_workers
from vimpac_core.video import worker as worker_module


def _probe_frames(path: str, out) -> None:
    out.put(probe(path).num_frames)


def test_workers_are_reused(clips):
    probe(clips["cfr30"])
    first = live_worker_pids()
    probe(clips["ntsc"])
    assert live_worker_pids() == first


def test_worker_is_recycled_after_max_jobs(clips, monkeypatch):
    shutdown_workers()
    monkeypatch.setattr(worker_module, "MAX_JOBS_PER_WORKER", 2)
    probe(clips["cfr30"])
    (pid,) = live_worker_pids()
    probe(clips["cfr30"])  # its second job: retired afterwards
    assert pid not in live_worker_pids() and not psutil.pid_exists(pid)


def test_works_inside_a_daemonic_process(clips):
    # Dask and multiprocessing pool workers are daemonic; multiprocessing refuses them children.
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=_probe_frames, args=(str(clips["cfr30"]), results), daemon=True)
    child.start()
    child.join(60)
    assert child.exitcode == 0 and results.get(timeout=5) == 90


@pytest.mark.slow
def test_worker_exits_when_its_caller_is_killed(clips):
    code = (
        "import os, sys\n"
        "from vimpac_core.video import probe, live_worker_pids\n"
        f"probe({str(clips['cfr30'])!r})\n"
        "print(*live_worker_pids(), flush=True)\n"
        "os._exit(0)  # no atexit clean-up, as after kill -9\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    (pid,) = [int(p) for p in done.stdout.split()]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.1)
    pytest.fail(f"decoder worker {pid} outlived its caller")
