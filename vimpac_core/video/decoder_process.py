"""The decoder process's side: ``python -m vimpac_core.video.decoder_process FD``.

It serves one request at a time on a socket inherited as file descriptor FD (a
``multiprocessing.connection.Connection``) and exits when the parent closes its end, or, since it
runs in a session of its own (signals to the parent's group do not reach it), as soon as the
parent is gone even in the middle of a job. Errors are sent back as (exception name, message);
see ``worker.py`` for the parent's side.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection

from vimpac_core.errors import VideoError


def _serve(conn) -> None:
    """Worker main loop: one request at a time, replies streamed back on ``conn``."""
    # Import the decoders once at start-up; a worker lives for many jobs.
    import av  # noqa: F401
    import decord  # noqa: F401

    from vimpac_core.video.decode import decode_windows, keep_container_for_decode, open_reader_for_probe
    from vimpac_core.video.probe import probe_local

    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        try:
            if kind == "probe":
                info = probe_local(**payload, open_reader=open_reader_for_probe, keep_container=keep_container_for_decode)
                conn.send(("result", info))
            elif kind == "decode":
                for window in decode_windows(**payload):
                    conn.send(("window", window))
                conn.send(("done", None))
            elif kind == "sleep":  # for tests: a decode that hangs
                time.sleep(payload["seconds"])
                conn.send(("done", None))
            else:
                conn.send(("error", ("ValueError", f"unknown worker request {kind!r}")))
        except VideoError as e:
            conn.send(("error", ("VideoError", str(e))))
        except Exception as e:
            conn.send(("error", _describe(e, payload)))


def _describe(error: Exception, payload: dict) -> tuple[str, str]:
    """(exception name for the parent, message). PyAV/decord errors mean a bad video (VideoError),
    even PyAV's that subclass ValueError; our own ValueErrors mean a bad request."""
    ours = isinstance(error, ValueError) and not type(error).__module__.startswith(("av", "decord"))
    if ours:
        return "ValueError", str(error)
    detail = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[-1]
    return (
        "VideoError",
        f"{payload.get('path', '?')}: cannot decode ({detail[:300]}); the file is corrupt or unsupported",
    )


def _exit_with_parent(interval_s: float = 1.0) -> None:
    """Daemon thread: end this process once its parent has died (it is re-parented then)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit(
            "usage: python -m vimpac_core.video.decoder_process FD (started by vimpac_core.video.worker)"
        )
    _exit_with_parent()
    _serve(Connection(int(sys.argv[1])))


if __name__ == "__main__":
    main()
