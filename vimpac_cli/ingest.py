"""`vimpac ingest`, `vimpac inspect`, `vimpac rerun-failed`.

ingest and rerun-failed call the Prefect flows of ``vimpac_flows/ingest.py`` (imported lazily);
inspect only reads Parquet/JSON from the output folder (no Prefect).
"""

from __future__ import annotations

import argparse
import json
import sys

from vimpac_core.config import IngestConfig
from vimpac_core.errors import ConfigError
from vimpac_core.shards.manifest import committed_shards
from vimpac_core.shards.schema import INGEST_OUTPUT
from vimpac_core.storage import check_output_dir, exists


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="video list -> token shards (download, probe, FPS decode, tokenize)")
    p.add_argument("inputs", help="video list: .csv, .jsonl, .parquet or mmaction2 .txt (any fsspec URL)")
    p.add_argument("--out", required=True, help="output folder (fsspec URL): shards/, manifest/, classes.json")
    p.add_argument("--tokenizer", required=True, help="dalle:PATH (encoder.pkl or converted folder) or vqvae:PATH")
    p.add_argument("--root", help="folder relative uris resolve against (default: the list's folder)")
    p.add_argument("--list-format", choices=["csv", "jsonl", "parquet", "txt"])
    p.add_argument("--class-index", help="classes.json (or output folder) of another ingest, e.g. the train "
                                         "list's, so class names map to the same indices")
    p.add_argument("--fps", type=float, default=2.0, help="target frames per second (FFmpeg fps filter)")
    p.add_argument("--frame-size", "--frame-out-size", type=int, default=128,
                   help="crop size S (short side resized to S or 1.25 S)")
    p.add_argument("--views", default=None,
                   help="pretrain (default) | finetune | test | comma-separated view names like s160-top-flip")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no flipped views (SSV2-like data)")
    one = p.add_argument_group("one view, as the original extraction script's flags (instead of --views)")
    one.add_argument("--frame-shorter-size", type=int, help="resize the shorter side to this (default: --frame-size)")
    one.add_argument("--crop-type", choices=["top", "center", "bottom"], help="crop position (default: center)")
    one.add_argument("--hflip", action="store_true", help="flip the crop horizontally")
    p.add_argument("--device", default="cpu", help="tokenizer device (cpu, cuda, cuda:1)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="tokenizer precision: fp32 (the release's exact codes) or bf16 (native bf16 only)")
    p.add_argument("--shard-size", type=int, default=64, help="videos per shard")
    p.add_argument("--batch-size", type=int, default=64, help="frames per tokenizer batch")
    p.add_argument("--decode-window", type=int, default=32, help="frames decoded at a time")
    p.add_argument("--probe-timeout", type=float, default=60.0, help="seconds")
    p.add_argument("--decode-timeout", type=float, default=300.0, help="seconds per video")
    p.add_argument("--video-store", help="fsspec URL where fetched http(s) videos are kept")
    p.add_argument("--max-bytes", type=int, default=2 * 1024**3, help="byte cap per video")
    p.add_argument("--download-timeout", type=float, default=60.0,
                   help="seconds per download attempt (the whole body)")
    p.add_argument("--download-retries", type=int, default=3, help="retries of transient download failures")
    p.add_argument("--task-runner", choices=["threads", "dask"], default="threads")
    p.add_argument("--max-workers", type=int, default=2, help="concurrent shard tasks / local Dask workers")
    p.add_argument("--dask-address", help="scheduler address of an existing Dask cluster")
    p.add_argument("--task-retries", type=int, default=2, help="Prefect retries of a shard (transient errors)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out that holds other files too (they are kept; only ingest's own are written)")
    p.set_defaults(func=cmd_ingest, on_interrupt=kept_shards, flag_names=FLAG_NAMES)


# IngestConfig fields whose flag is not the field's name with dashes (errors name the flag).
FLAG_NAMES = {"inputs": "LIST", "flip": "--no-flip", "probe_timeout_s": "--probe-timeout",
              "decode_timeout_s": "--decode-timeout", "download.store": "--video-store",
              "download.max_bytes": "--max-bytes", "download.timeout_s": "--download-timeout",
              "download.retries": "--download-retries"}


def views_from_args(args: argparse.Namespace) -> str:
    """--views, or the one view that --frame-shorter-size / --crop-type / --hflip describe."""
    single = args.frame_shorter_size is not None or args.crop_type is not None or args.hflip
    if single and args.views is not None:
        raise ConfigError("give either --views or --frame-shorter-size/--crop-type/--hflip, not both")
    if not single:
        return args.views or "pretrain"
    short = args.frame_shorter_size if args.frame_shorter_size is not None else args.frame_size
    return f"s{short}-{args.crop_type or 'center'}-{'flip' if args.hflip else 'noflip'}"


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    """The IngestConfig that `vimpac ingest` flags describe."""
    download = dict(store=args.video_store, max_bytes=args.max_bytes, timeout_s=args.download_timeout,
                    retries=args.download_retries)
    return IngestConfig(
        inputs=args.inputs, out=args.out, root=args.root, list_format=args.list_format,
        class_index=args.class_index, fps=args.fps,
        frame_size=args.frame_size, views=views_from_args(args), flip=args.flip, tokenizer=args.tokenizer,
        precision=args.precision, device=args.device, shard_size=args.shard_size, batch_size=args.batch_size,
        decode_window=args.decode_window, probe_timeout_s=args.probe_timeout,
        decode_timeout_s=args.decode_timeout, download=download, task_runner=args.task_runner,
        max_workers=args.max_workers, dask_address=args.dask_address, task_retries=args.task_retries,
    )


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
