"""The ``vimpac`` command line.

Each command group lives in its own module of this package with a ``register(subparsers)``
function. Commands are thin: they parse flags and call a flow (imported lazily, inside the
command, so that importing vimpac_core never imports Prefect).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules of this package that add commands, in the order their commands appear in --help.
COMMAND_MODULES = ("ingest", "datasets", "tokenizer", "model", "train", "finetune", "sweep", "demo", "plan", "k8s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vimpac",
        description="VIMPAC pipeline: ingest videos to token shards, train tokenizers, pre-train and fine-tune.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"vimpac_core.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; our errors (bad input, config, checkpoint) print one line and exit 2."""
    from pydantic import ValidationError

    from vimpac_core.errors import VimpacError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (VimpacError, ValidationError) as exc:
        print(f"vimpac {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return int(result or 0)


def _one_line(exc: Exception) -> str:
    """A pydantic error as 'field: message' lines joined; ours as they are."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(map(str, err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
        return "; ".join(parts)
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
