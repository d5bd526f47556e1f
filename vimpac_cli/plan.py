"""`vimpac plan PRESET`: estimate the wall time, GPU hours and storage of a run before running it.

The videos: ``--videos N --mean-duration S`` or ``--list FILE`` (local videos, probed). The
pre-training stages, their shapes and epochs come from the preset (``--epochs`` and
``--stage2-epochs`` change them); ``--finetune-videos N`` adds a fine-tuning stage. The rates:
``--rates FILE`` (YAML/JSON, see vimpac_core/plan/estimate.py: Rates; e.g. bench figures of a
GPU) or ``--calibrate`` (tiny real runs on this machine: decode, tokenize with ``--tokenizer``,
training steps; ``--save-rates FILE`` keeps them). Prints one row per stage and names the
bottleneck stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import yaml

from vimpac_cli.common import find_preset
from vimpac_core.config import IngestConfig
from vimpac_core.errors import ConfigError
from vimpac_core.plan import Cluster
from vimpac_core.train.finetune_config import FinetuneConfig


def register(sub: argparse._SubParsersAction) -> None:
    """Add `plan` to the `vimpac` parser."""
    p = sub.add_parser("plan", help="estimate wall time, GPU hours and storage of a run",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", help="pre-training preset: a YAML path or a packaged preset name (large, small, tiny)")
    ingest = IngestConfig.model_fields  # defaults come from the models, never typed twice
    what = p.add_argument_group("videos")
    what.add_argument("--videos", type=int, help="number of videos")
    what.add_argument("--mean-duration", type=float, help="mean duration of a video, seconds")
    what.add_argument("--list", help="a video list of local files (probed for their durations)")
    what.add_argument("--fps", type=float, default=ingest["fps"].default,
                      help=f"frames per second extracted (default: ingest's, {ingest['fps'].default})")
    what.add_argument("--views", default=ingest["views"].default,
                      help=f"ingest view set or view names (default: ingest's, {ingest['views'].default})")
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, help="epochs of every stage (default: the preset's)")
    train.add_argument("--stage2-epochs", type=int, help="epochs of stage 2 only")
    train.add_argument("--finetune-videos", type=int, help="add a fine-tuning stage on this many videos")
    epochs = FinetuneConfig.model_fields["epochs"].default
    train.add_argument("--finetune-epochs", type=int, default=epochs, help=f"fine-tuning epochs (default: {epochs})")
    train.add_argument("--finetune-frame-size", type=int, help="default: the last stage's frame size")
    train.add_argument("--finetune-clip-len", type=int, help="default: the last stage's clip_len")
    train.add_argument("--finetune-classes", type=int, default=400, help="classes of the fine-tuning task")
    where = p.add_argument_group("cluster")
    cluster = {f.name: f.default for f in dataclasses.fields(Cluster)}
    where.add_argument("--nodes", type=int, default=cluster["nodes"], help=f"(default: {cluster['nodes']})")
    where.add_argument("--gpus-per-node", type=int, default=cluster["gpus_per_node"],
                       help=f"(default: {cluster['gpus_per_node']})")
    where.add_argument("--decode-workers-per-node", type=int, default=cluster["decode_workers_per_node"],
                       help=f"CPU cores decoding per node (default: {cluster['decode_workers_per_node']})")
    rates = p.add_argument_group("rates")
    rates.add_argument("--rates", help="YAML/JSON file of rates (per GPU, per decoder worker), or a packaged one (v100-derived)")
    rates.add_argument("--calibrate", action="store_true", help="measure the rates on this machine")
    rates.add_argument("--tokenizer", help="tokenizer to calibrate, e.g. vqvae:tok/tokenizer or dalle:encoder.pkl")
    rates.add_argument("--sample-video", help="video to calibrate decode on (default: a generated clip)")
    rates.add_argument("--calibration-steps", type=int, default=2, help="timed training steps per stage")
    rates.add_argument("--save-rates", help="write the rates used to this YAML file")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")
    p.set_defaults(func=cmd_plan)


def _workload(args: argparse.Namespace, frame_size: int):
    from vimpac_core.plan import Workload
    from vimpac_core.video import view_set

    try:
        views = len(view_set(args.views, frame_size))
    except ValueError as err:
        raise ConfigError(f"views: {err}") from None
    if args.list:
        from vimpac_core.plan.calibrate import workload_from_list

        return workload_from_list(args.list, args.fps, views)
    if args.videos is None or args.mean_duration is None:
        raise ConfigError("videos: give --videos N --mean-duration SECONDS, or --list FILE")
    return Workload(args.videos, args.mean_duration, args.fps, views)


def _stages(args: argparse.Namespace, videos: int, configs: list) -> list:
    """(plan stage, model config) of every pre-training stage and the fine-tuning one."""
    from vimpac_core.plan import TrainStage
    from vimpac_core.plan.calibrate import count_parameters

    out = []
    for number, stage in enumerate(configs, start=1):
        m = stage.model
        out.append((TrainStage(f"stage{number}", m.frame_size, m.clip_len, stage.epochs, videos,
                               count_parameters(m), keep_checkpoints=stage.keep_checkpoints,
                               downsample=m.downsample), m))
    if args.finetune_videos:
        last = out[-1][1]
        m = last.model_copy(update={"frame_size": args.finetune_frame_size or last.frame_size,
                                    "clip_len": args.finetune_clip_len or last.clip_len,
                                    "num_labels": args.finetune_classes})
        out.append((TrainStage("finetune", m.frame_size, m.clip_len, args.finetune_epochs, args.finetune_videos,
                               count_parameters(m, classification=True), clips_per_video=1,
                               downsample=m.downsample), m))
    return out


def _preset_stages(args: argparse.Namespace) -> list:
    from vimpac_core.train.config import parse_stages

    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    if args.stage2_epochs is not None:
        overrides["stage2.epochs"] = args.stage2_epochs
    return parse_stages(find_preset(args.preset, "pretrain"), overrides)


def _rates(args: argparse.Namespace, stages: list, fps: float):
    from vimpac_core.plan import Rates

    if args.rates and args.calibrate:
        raise ConfigError("rates: give --rates FILE or --calibrate, not both")
    if args.rates:
        try:
            data = yaml.safe_load(Path(find_preset(args.rates, "plan")).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"rates: {args.rates!r} cannot be read: {err}") from None
        return Rates.model_validate(data)
    if not args.calibrate:
        raise ConfigError("rates: give --rates FILE (e.g. from bench figures of a GPU) or --calibrate")
    if not args.tokenizer:
        raise ConfigError("tokenizer: --calibrate needs --tokenizer vqvae:DIR or dalle:encoder.pkl to time")
    from vimpac_core.plan.calibrate import calibrate

    pretrain_sizes = list(dict.fromkeys(s.frame_size for s, _ in stages if s.clips_per_video == 2))
    return calibrate(tokenizer_spec=args.tokenizer, fps=fps, frame_sizes=pretrain_sizes, stages=stages,
                     sample_video=args.sample_video, steps=args.calibration_steps,
                     progress=lambda msg: print(msg, file=sys.stderr))


def cmd_plan(args: argparse.Namespace) -> int:
    from vimpac_core.plan import Cluster, estimate, format_plan, plan_dict

    if min(args.nodes, args.gpus_per_node, args.decode_workers_per_node) < 1:
        raise ConfigError("nodes, gpus-per-node and decode-workers-per-node must be >= 1")
    configs = _preset_stages(args)
    work = _workload(args, configs[0].model.frame_size)  # a view set's size depends on the frame size
    stages = _stages(args, work.videos, configs)
    rates = _rates(args, stages, work.fps)
    if args.save_rates:
        Path(args.save_rates).write_text(yaml.safe_dump(rates.model_dump(), sort_keys=False))
    cluster = Cluster(args.nodes, args.gpus_per_node, args.decode_workers_per_node)
    pretrain = [s for s, _ in stages if s.clips_per_video == 2]
    finetune = next((s for s, _ in stages if s.clips_per_video == 1), None)
    plan = estimate(work, cluster, rates, pretrain, finetune)
    print(f"videos: {work.videos:,} x {work.mean_duration_s:.0f} s at {work.fps:g} fps, {work.views} view(s)")
    print(json.dumps(plan_dict(plan), indent=1) if args.json else format_plan(plan, cluster))
    return 0

