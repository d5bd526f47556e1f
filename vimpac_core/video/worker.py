"""Decoder worker processes: probe and decode run here, so a hung or crashing decode can be killed.

decord can hang or leak on some files, and a thread cannot be killed, so every decoder call
runs in a child process. The child is a fresh interpreter (``python -m
vimpac_core.video.decoder_process``) talking over a socket pair: not fork (the caller may run
threads, which fork would copy in an undefined state), and not multiprocessing's spawn either,
which re-imports the caller's main script and refuses to start children from daemonic processes
such as Dask workers. Workers are long-lived and reused (start-up costs ~0.3 s of imports) and
replaced after a kill, an error mid-stream, or ``MAX_JOBS_PER_WORKER`` jobs (bounds slow leaks).

Time limit: ``timeout_s`` bounds the total time the caller spends *waiting* for the worker over
the whole job; time the consumer spends between windows (tokenizing) is not counted.
Back-pressure: a worker blocks on the pipe once a window is in flight, so it runs at most one
window ahead of the consumer.

Stopping: workers run in sessions of their own, so a terminal's Ctrl-C reaches the command, not
the decoders; the caller checks ``vimpac_core.interrupts`` while it waits and raises Interrupted
(the worker is killed). A worker that ends by SIGINT/SIGTERM/SIGHUP, or while a stop is requested,
was stopped from outside: Interrupted, never a VideoError that would blame the video.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from vimpac_core import interrupts
from vimpac_core.errors import DecodeTimeoutError, Interrupted, VideoError

MAX_IDLE_WORKERS = 4
MAX_JOBS_PER_WORKER = 200
POLL_S = 0.2  # how often a waiting caller looks at the stop flag


class Worker:
    """One decoder process and the parent's end of its socket."""

    def __init__(self) -> None:
        parent_end, child_end = socket.socketpair()
        env = dict(os.environ)
        # The child must import this very vimpac_core, installed or not.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vimpac_core.video.decoder_process", str(child_end.fileno())],
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # the terminal's Ctrl-C is for the command, which stops us
            )
        finally:
            child_end.close()
        self.conn = Connection(parent_end.detach())
        self.jobs = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_code(self, wait_s: float = 0.0) -> int | None:
        """The exit status (negative: killed by that signal), waiting up to ``wait_s``; None if running."""
        try:
            return self.process.wait(timeout=wait_s) if wait_s else self.process.poll()
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Kill the process (SIGKILL) and reap it; safe to call twice."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        self.conn.close()


_lock = threading.Lock()
_idle: list[Worker] = []
_live: set[int] = set()  # pids of every worker not yet killed, idle or busy


def live_worker_pids() -> set[int]:
    """Pids of decoder workers this process has started and not yet killed (idle or busy)."""
    with _lock:
        return set(_live)


def _acquire() -> Worker:
    with _lock:
        while _idle:
            worker = _idle.pop()
            if worker.alive():
                return worker
            worker.kill()  # died while idle: reap it
            _live.discard(worker.pid)
    worker = Worker()
    with _lock:
        _live.add(worker.pid)
    return worker


def _release(worker: Worker) -> None:
    worker.jobs += 1
    with _lock:
        if worker.alive() and worker.jobs < MAX_JOBS_PER_WORKER and len(_idle) < MAX_IDLE_WORKERS:
            _idle.append(worker)
            return
    _discard(worker)


def _discard(worker: Worker) -> None:
    worker.kill()
    with _lock:
        _live.discard(worker.pid)


def shutdown_workers() -> None:
    """Kill every idle worker (busy ones are killed by their own job's clean-up)."""
    with _lock:
        idle = list(_idle)
        _idle.clear()
    for worker in idle:
        _discard(worker)


def _kill_all_now() -> None:
    """Hard stop: SIGKILL every live worker, idle or busy (the process is about to exit)."""
    for pid in live_worker_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


atexit.register(shutdown_workers)
interrupts.on_hard_stop(_kill_all_now)

_ERRORS = {"VideoError": VideoError, "ValueError": ValueError}


def stream_worker(kind: str, payload: dict, *, timeout_s: float | None, what: str) -> Iterator[Any]:
    """Send one request to a worker and yield its replies ('window' payloads, or one 'result').

    Raises:
        DecodeTimeoutError: waiting for the worker took longer than ``timeout_s`` in total.
        VideoError: the video is bad, or the worker died (e.g. the decoder crashed).
        Interrupted: a stop was requested, or the worker was killed by SIGINT/SIGTERM/SIGHUP.
        ValueError: the request itself was invalid.
    """
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive or None, got {timeout_s}")
    worker = _acquire()
    clean = False
    waited = 0.0
    try:
        worker.conn.send((kind, payload))
        while True:
            try:
                waited, message = _next_message(worker, timeout_s, waited, what)
            except (EOFError, OSError):
                raise _death(worker, what) from None
            if message is None:
                raise DecodeTimeoutError(f"{what}: no result within {timeout_s} s; the decoder was killed")
            tag, body = message
            if tag == "error":
                clean = True  # the worker caught it and is ready for the next job
                name, text = body
                raise _ERRORS.get(name, VideoError)(text)
            if tag == "done":
                clean = True
                return
            if tag == "result":
                clean = True
                yield body
                return
            yield body
    finally:
        if clean:
            _release(worker)
        else:
            _discard(worker)


def _next_message(worker: Worker, timeout_s: float | None, waited: float, what: str) -> tuple[float, Any]:
    """(time waited so far, the next message or None on timeout); polls in ``POLL_S`` slices so
    that a stop request is seen within one slice (raises Interrupted)."""
    while True:
        interrupts.check_stop(what)
        left = None if timeout_s is None else max(timeout_s - waited, 0.0)
        step = POLL_S if left is None else min(POLL_S, left)
        start = time.monotonic()
        ready = worker.conn.poll(step)
        waited += time.monotonic() - start
        if ready:
            return waited, worker.conn.recv()
        if left is not None and waited >= timeout_s:
            return waited, None


def _death(worker: Worker, what: str) -> Exception:
    """The error for a worker whose pipe closed: stopped from outside, or crashed on the file."""
    code = worker.exit_code(wait_s=5.0)
    if interrupts.stop_requested() or (code is not None and -code in interrupts.STOP_SIGNALS):
        return Interrupted(f"{what}: the decoder process was stopped ({_ended(code)}); the video was not judged")
    return VideoError(f"{what}: the decoder process died ({_ended(code)}); the file likely crashes FFmpeg")


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def call_worker(kind: str, payload: dict, *, timeout_s: float | None, what: str) -> Any:
    """One request with a single result (probe)."""
    for result in stream_worker(kind, payload, timeout_s=timeout_s, what=what):
        return result
    raise VideoError(f"{what}: the decoder returned nothing")
