"""The Prefect API a command talks to: the configured one, or a temporary local server of our own.

Without ``PREFECT_API_URL`` Prefect would start a temporary server itself, as a child in the
command's process group: a Ctrl-C in the terminal then kills the server along with the command,
and the command spins on connection errors. :func:`prefect_api` starts that server in a session of
its own instead (the terminal's signals reach only the command, which stops the server last, after
its flow has ended), points this process and its children at it, and stops it on the way out; a
second Ctrl-C kills it at once (``vimpac_core.interrupts`` hard-stop hook). The server's telemetry
heartbeat is off unless the user turned it on, so offline runs print no telemetry errors.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx

from vimpac_core import interrupts

STARTUP_TIMEOUT_S = 120.0
# What Prefect's own temporary server sets: no UI, services for an ephemeral server only.
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
OFFLINE_DEFAULTS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


class ServerStartError(RuntimeError):
    """The temporary Prefect server did not come up."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(port: int, log) -> subprocess.Popen:
    """uvicorn serving Prefect's API app on ``port``, in a session of its own, output to ``log``."""
    from prefect.settings import get_current_settings

    env = {**os.environ, **SERVER_ENV, **get_current_settings().to_environment_variables(exclude_unset=True)}
    for key, value in OFFLINE_DEFAULTS.items():
        env.setdefault(key, value)
    command = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_healthy(proc: subprocess.Popen, url: str, timeout_s: float, log) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            interrupts.check_stop("starting the temporary Prefect server")
            if proc.poll() is not None:
                raise ServerStartError(f"the temporary Prefect server exited with code {proc.returncode}: "
                                       f"{_tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/health").status_code == 200:
                    return
            time.sleep(0.2)
    raise ServerStartError(f"the temporary Prefect server did not answer within {timeout_s:.0f} s: {_tail(log)}")


def _tail(log, limit: int = 600) -> str:
    log.flush()
    log.seek(0)
    text = log.read().decode(errors="replace").strip()
    return text[-limit:].replace("\n", " | ") or "(no output)"


def _drain_clients(timeout_s: float = 10.0) -> None:
    """Send the logs and events still queued in this process before their server goes away."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            service.drain_all(timeout=timeout_s)


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the server's session, SIGKILL it after ``grace_s``."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the API URL flows in this thread use: the configured one, else a temporary server's."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    configured = get_current_settings().api.url
    if configured:
        yield configured
        return
    port = _free_port()
    log = tempfile.TemporaryFile()  # the server's output: shown only if it fails to start
    proc = _start(port, log)
    remove_hook = interrupts.on_hard_stop(lambda: os.killpg(proc.pid, signal.SIGKILL))
    url = f"http://127.0.0.1:{port}/api"
    before = os.environ.get("PREFECT_API_URL")
    try:
        _wait_healthy(proc, url, STARTUP_TIMEOUT_S, log)
        os.environ["PREFECT_API_URL"] = url  # children (Dask workers, subprocesses) use it too
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain_clients()
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        _stop(proc)
        remove_hook()
        log.close()
