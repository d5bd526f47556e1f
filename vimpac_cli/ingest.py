"""`vimpac ingest`, `vimpac inspect`, `vimpac rerun-failed`.

ingest and rerun-failed call the Prefect flows of ``vimpac_flows/ingest.py`` (imported lazily);
inspect only reads Parquet/JSON from the output folder (no Prefect).
"""

from __future__ import annotations

import argparse
import json
import sys

from vimpac_cli.flags import ConfigFlags, flat_model
from vimpac_core.config import IngestConfig
from vimpac_core.errors import ConfigError
from vimpac_core.shards.manifest import committed_shards
from vimpac_core.shards.schema import INGEST_OUTPUT
from vimpac_core.storage import check_output_dir, exists


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="video list -> token shards (download, probe, FPS decode, tokenize)",
                       usage="vimpac ingest LIST --out OUT --tokenizer KIND:PATH [--FIELD VALUE ...] [--overwrite]",
                       description="Ingest the videos of LIST into token shards. The flags are IngestConfig's fields "
                                   "(download.* DownloadConfig's), generated from the models; the original extraction "
                                   "script's names are aliases.")
    p.add_argument("inputs", metavar="LIST", help=IngestConfig.model_fields["inputs"].description)
    p._optionals.title = "IngestConfig fields"  # a parser, not a group: download.* become a group of their own
    flags = ConfigFlags(p, flat_model("IngestFlags", IngestConfig, exclude=("inputs",)), aliases=ALIASES,
                        enforce_required=True)
    p.add_argument("--no-flip", dest="flip", action="store_const", const="false", help="= --flip false")
    one = p.add_argument_group("one view, as the original extraction script's flags (instead of --views)")
    one.add_argument("--frame-shorter-size", type=int, help="resize the shorter side to this (default: --frame-size)")
    one.add_argument("--crop-type", choices=["top", "center", "bottom"], help="crop position (default: center)")
    one.add_argument("--hflip", action="store_true", help="flip the crop horizontally")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out that holds other files too (they are kept; only ingest's own are written)")
    p.set_defaults(func=cmd_ingest, on_interrupt=kept_shards, flag_names={"inputs": "LIST"}, config_flags=flags)


# Earlier flag names of IngestConfig fields (kebab field -> alias), as the extraction scripts and this CLI had them.
ALIASES = {"frame-size": "frame-out-size", "probe-timeout-s": "probe-timeout", "decode-timeout-s": "decode-timeout",
           "download.store": "video-store", "download.max-bytes": "max-bytes",
           "download.timeout-s": "download-timeout", "download.retries": "download-retries"}


def views_from_args(args: argparse.Namespace, values: dict) -> str:
    """--views, or the one view that --frame-shorter-size / --crop-type / --hflip describe."""
    single = args.frame_shorter_size is not None or args.crop_type is not None or args.hflip
    views = values.get("views")
    if single and views is not None:
        raise ConfigError("give either --views or --frame-shorter-size/--crop-type/--hflip, not both")
    if not single:
        return views or IngestConfig.model_fields["views"].default
    short = args.frame_shorter_size if args.frame_shorter_size is not None else values.get(
        "frame_size", IngestConfig.model_fields["frame_size"].default)
    return f"s{short}-{args.crop_type or 'center'}-{'flip' if args.hflip else 'noflip'}"


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    """The IngestConfig that `vimpac ingest` flags describe."""
    values = args.config_flags.values(args)
    return IngestConfig(**{**values, "inputs": args.inputs, "views": views_from_args(args, values)})


def kept_shards(args: argparse.Namespace) -> str:
    """What an interrupted ingest / rerun-failed kept, and how to go on (the command's last line)."""
    n = len(committed_shards(args.out)) if exists(args.out) else 0
    again = "the same command" if args.command == "ingest" else f"`vimpac rerun-failed {args.out}`"
    return (f"{n} committed shard(s) in {args.out} are kept, the shard in flight was not committed; "
            f"run {again} again to finish")


def cmd_ingest(args: argparse.Namespace) -> int:
    from vimpac_core.ingest import get_tokenizer, plan_ingest
    from vimpac_flows.ingest import ShardTasksFailed, run_ingest
    from vimpac_flows.server import prefect_api

    # Everything that can be checked without decoding fails here, in one line, before any server
    # starts: flags, the output folder, the tokenizer's weights (or bf16 where the device has none),
    # the list (format, columns, rows, duplicate ids, labels) and an output made with other settings.
    config = config_from_args(args)
    if not exists(config.inputs):
        raise ConfigError(f"video list {config.inputs} does not exist")
    check_output_dir(config.out, INGEST_OUTPUT, overwrite=args.overwrite, owner="ingest")
    tokenizer = get_tokenizer(config.tokenizer, config.device, config.batch_size, config.precision)
    plan_ingest(config, tokenizer.tokenizer_id)

    try:
        with prefect_api():
            summary = run_ingest(config)
    except ShardTasksFailed as exc:
        print(f"vimpac ingest: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 1 if summary["failed"] and not summary["ok"] else 0


def cmd_rerun_failed(args: argparse.Namespace) -> int:
    from vimpac_flows.ingest import ShardTasksFailed, run_rerun_failed
    from vimpac_flows.server import prefect_api

    try:
        with prefect_api():
            summary = run_rerun_failed(args.out, include_permanent=args.include_permanent)
    except ShardTasksFailed as exc:
        print(f"vimpac rerun-failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from vimpac_core.shards.inspect import format_inspection, inspect_output

    info = inspect_output(args.out)
    print(json.dumps(info, indent=1) if args.json else format_inspection(info, args.limit))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ingest, inspect and rerun-failed to the `vimpac` parser."""
    _add_ingest(sub)
    p = sub.add_parser("inspect", help="summarise an ingest output folder (shards, rows, failures)")
    p.add_argument("out", help="output folder of `vimpac ingest`")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--limit", type=int, default=20, help="failed videos to list")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("rerun-failed", help="re-extract only failed videos and never-committed shards")
    p.add_argument("out", help="output folder of `vimpac ingest`")
    p.add_argument("--include-permanent", action="store_true",
                   help="retry permanent failures too (e.g. after installing a missing codec)")
    p.set_defaults(func=cmd_rerun_failed, on_interrupt=kept_shards)
