"""Stopping a command on the user's signal without losing or mis-recording anything.

One process-wide flag. The command line sets it on the first SIGINT (Ctrl-C) or SIGTERM; long
work checks it at safe points (between decoded windows, before committing a shard, between
training steps) and raises :class:`~vimpac_core.errors.Interrupted`, so the piece in flight is
dropped whole and nothing finished is touched. A second signal runs the hard-stop hooks (helper
processes are killed now) and ends the process at once.

Helper processes (decoders, the temporary Prefect server, torchrun) run in sessions of their own,
so a terminal's Ctrl-C reaches only the command, which then stops them in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

from vimpac_core.errors import Interrupted

_stop = threading.Event()
_signum: int | None = None
_hooks: list[Callable[[], None]] = []
_hooks_lock = threading.Lock()
NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
# A helper process that ended by one of these was stopped from outside, not broken by its input.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def request_stop(signum: int = signal.SIGINT) -> None:
    """Ask every piece of long work in this process to stop at its next safe point."""
    global _signum
    if _signum is None:
        _signum = signum
    _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def stop_event() -> threading.Event:
    """The flag as an Event (for code that takes a ``cancel`` event, e.g. the torchrun launcher)."""
    return _stop


def stop_signal() -> int | None:
    """The signal that asked to stop (None when none did)."""
    return _signum


def describe(signum: int | None) -> str:
    if signum is None:
        return "a stop request"
    return NAMES.get(signum, signal.Signals(signum).name)


def check_stop(what: str = "") -> None:
    """Raise Interrupted when a stop was requested; call it where stopping loses nothing."""
    if _stop.is_set():
        raise Interrupted(f"{what + ': ' if what else ''}stopped by {describe(_signum)}")


def exit_code(signum: int | None) -> int:
    """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + (signum or signal.SIGINT)


def on_hard_stop(hook: Callable[[], None]) -> Callable[[], None]:
    """Run ``hook`` (kill a helper process now) if the user insists; returns its remover."""
    with _hooks_lock:
        _hooks.append(hook)

    def remove() -> None:
        with _hooks_lock:
            if hook in _hooks:
                _hooks.remove(hook)

    return remove


def hard_stop() -> None:
    """Run every hard-stop hook (errors ignored: this is the last thing the process does)."""
    with _hooks_lock:
        hooks = list(_hooks)
    for hook in hooks:
        with contextlib.suppress(Exception):
            hook()


def reset() -> None:
    """Forget an earlier stop request (a new command in the same process, tests)."""
    global _signum
    _signum = None
    _stop.clear()


@contextlib.contextmanager
def signal_handlers(on_first: Callable[[int], None] | None = None) -> Iterator[None]:
    """While inside (main thread only): the first SIGINT/SIGTERM requests a stop and calls
    ``on_first(signum)``; a second one runs the hard-stop hooks and exits at once with 128 + signum.
    Elsewhere than the main thread this installs nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if _stop.is_set():
            hard_stop()
            os._exit(exit_code(_signum or signum))
        request_stop(signum)
        if on_first is not None:
            on_first(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before if before is not None else signal.SIG_DFL)
