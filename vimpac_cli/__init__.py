"""The ``vimpac`` command line.

Each command group lives in its own module of this package with a ``register(subparsers)``
function. Commands are thin: they parse flags and call a flow (imported lazily, inside the
command, so that `--help` and `vimpac inspect` never import Prefect). A package of its own, above
the flows: nothing in vimpac_core imports it (tests/test_layering.py).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence

# Modules of this package that add commands, in the order their commands appear in --help.
COMMAND_MODULES = ("ingest", "datasets", "tokenizer", "model", "train", "finetune", "sweep", "demo", "demo_data", "plan", "k8s")


def build_parser() -> argparse.ArgumentParser:
    from vimpac_cli.flags import ArgumentParser

    parser = ArgumentParser(
        prog="vimpac",
        description="VIMPAC pipeline: ingest videos to token shards, train tokenizers, pre-train and fine-tune.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"vimpac_cli.{name}")
        module.register(sub)
    return parser


def parse_command_line(argv: Sequence[str] | None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The parsed arguments of one command; UsageError (one line, naming the flag) when they do not parse."""
    from vimpac_cli.flags import unknown_flag

    parser = parser or build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        raise unknown_flag(commands[args.command], extra)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; our errors (bad input, config, checkpoint, flags) print one line
    ``vimpac CMD: error: ...`` and exit 2.

    The command runs on a worker thread while this (main) thread owns the signals: the first
    Ctrl-C / SIGTERM asks the work to stop at its next safe point (``vimpac_core.interrupts``) and,
    within ``STOP_GRACE_S``, the command ends with one line saying what was kept and how to go on,
    exit code 130 / 143; a second signal stops at once.
    """
    from vimpac_cli.flags import UsageError
    from vimpac_core import interrupts

    try:
        args = parse_command_line(argv)
    except UsageError as exc:  # argparse's errors too: one line, exit 2, as every other error of ours
        print(f"{exc.prog}: error: {exc}", file=sys.stderr)
        return 2
    code = run_command(args)
    if interrupts.stop_signal() is not None:
        # Stopped by the user: helpers go now and nothing waits at exit (Prefect's exit hooks
        # would try to reach a server that is gone). Finished files were written atomically.
        interrupts.hard_stop()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


STOP_GRACE_S = 10.0


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.func(args)`` on a worker thread under our signal handling; -> exit code."""
    import contextvars

    from vimpac_core import interrupts

    interrupts.reset()
    outcome: dict = {}
    context = contextvars.copy_context()  # the caller's settings contexts hold on the worker thread

    def work() -> None:
        try:
            outcome["result"] = context.run(args.func, args)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread below
            outcome["error"] = exc

    thread = threading.Thread(target=work, name=f"vimpac-{args.command}", daemon=True)
    with interrupts.signal_handlers(on_first=_quiet_on_stop):
        thread.start()
        _wait(thread)
    if interrupts.stop_requested() and (thread.is_alive() or outcome.get("error") or outcome.get("result")):
        return _report_stop(args)  # a command that finished anyway (exit 0) says so as usual
    return _exit_code(args, outcome)


def _wait(thread: threading.Thread) -> None:
    """Join ``thread``; once a stop is requested, wait at most STOP_GRACE_S more, then hard-stop."""
    from vimpac_core import interrupts

    stop_seen = None
    while thread.is_alive():
        thread.join(0.1)
        if interrupts.stop_requested():
            stop_seen = stop_seen or time.monotonic()
            if time.monotonic() - stop_seen > STOP_GRACE_S:
                interrupts.hard_stop()
                return


def _quiet_on_stop(signum: int) -> None:
    """After the user's signal the failures it causes are expected: the last line says it all."""
    logging.disable(logging.CRITICAL)


def _report_stop(args: argparse.Namespace) -> int:
    from vimpac_core import interrupts

    signum = interrupts.stop_signal()
    kept = getattr(args, "on_interrupt", None)
    try:
        what = kept(args) if kept is not None else "what was written so far is kept; run the same command again to continue"
    except Exception as exc:  # noqa: BLE001 - the line must come out whatever the state on disk
        what = f"could not list what was kept ({type(exc).__name__}: {exc})"
    print(f"vimpac {args.command}: stopped by {interrupts.describe(signum)}; {what}", file=sys.stderr, flush=True)
    return interrupts.exit_code(signum)


def _exit_code(args: argparse.Namespace, outcome: dict) -> int:
    """The result of a finished command, or its error as one line (exit 2 for our errors)."""
    from pydantic import ValidationError

    from vimpac_core.errors import VimpacError

    exc = outcome.get("error")
    if exc is None:
        return int(outcome.get("result") or 0)
    if isinstance(exc, KeyboardInterrupt):
        print(f"vimpac {args.command}: interrupted", file=sys.stderr)
        return 130
    if isinstance(exc, (VimpacError, ValidationError)):
        print(f"vimpac {args.command}: error: {_one_line(exc, getattr(args, 'flag_names', {}))}", file=sys.stderr)
        return 2
    raise exc


def _one_line(exc: Exception, flag_names: dict[str, str] | None = None) -> str:
    """A pydantic error as '--flag: message' parts joined; ours as they are.

    A field is named by the flag that sets it: ``flag_names`` (the command's own names, e.g.
    ``probe_timeout_s`` -> ``--probe-timeout``), else the field with dashes (``--frame-size``)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(map(str, err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            flag = (flag_names or {}).get(where) or (f"--{where.replace('_', '-')}" if where else "")
            parts.append(f"{flag}: {msg}" if flag else msg)
        return "; ".join(parts)
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
