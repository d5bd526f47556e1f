"""`vimpac finetune CONFIG [--flags]` and `vimpac evaluate CHECKPOINT --data URI [--flags]`.

Fine-tuning flags are FinetuneConfig / VimpacConfig field names with dashes, generated from the
models as for `vimpac pretrain` (every one is listed below), evaluation flags EvaluateConfig's,
and the original VIMPAC flags are accepted (``--different-shape``, ``--num-test-clips``,
``--last-test-clips 2,5,10``, ``--bs-per-gpu``, ``--epsilon``, ``--clip-grad-norm``, ``--fp16``,
``--model efflayoutT,H|W``). The config is resolved against its ``load`` checkpoint (architecture
and vocabulary) and data (num_labels, token grid, codebook) before anything runs; a bad value
fails with one line naming the field. ``--check`` validates and prints the resolved config;
``--timeout S`` bounds each torchrun launch. The flows are imported only after validation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vimpac_cli.train import TrainingFlags, add_command_flags
from vimpac_core.errors import ConfigError
from vimpac_core.storage import check_output_dir
from vimpac_core.train.checkpoint import STATE_NAME
from vimpac_core.train.config import load_yaml
from vimpac_core.train.finetune_config import EvaluateConfig, FinetuneConfig
from vimpac_core.train.preflight import auto_vocab
from vimpac_core.train.resolve import resolve_evaluate, resolve_finetune

# What a fine-tuning / evaluation run writes in its output folder (anything else there is the user's).
FINETUNE_OUTPUT = ("checkpoints", "tensorboard", "metrics.json", "run_config.json", "failure-rank*.json", "best",
                   "eval", "eval-*")
EVALUATE_OUTPUT = ("clips*", "tensorboard", "metrics.json", "run_config.json", "failure-rank*.json")
EVAL_DEFAULTS = ("frame_rate", "test_views", "test_clip_position", "dataset")  # from the run that made the checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    """Add `finetune` and `evaluate` to the `vimpac` parser."""
    p = sub.add_parser("finetune", help="fine-tune a classifier on labelled token shards, then evaluate it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage="vimpac finetune CONFIG [--FIELD VALUE ...] [--timeout S] [--check] [--overwrite]")
    p.add_argument("config", help="preset YAML, e.g. configs/finetune/ucf101.yaml")
    flags = TrainingFlags(p, FinetuneConfig, stages=False)
    add_command_flags(p, "torchrun launch")
    p.set_defaults(func=cmd_finetune, config_flags=flags)
    e = sub.add_parser("evaluate", help="multi-view test of a fine-tuned checkpoint",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage="vimpac evaluate CHECKPOINT --data URI [--FIELD VALUE ...] [--timeout S] [--check] [--overwrite]")
    e.add_argument("checkpoint", help="a fine-tuned model folder (<output>/checkpoints/final or <output>/best)")
    flags = TrainingFlags(e, EvaluateConfig, stages=False, exclude=("checkpoint",), required_note="(required)")
    for action in flags.sets[""].actions:
        if action.dest == "output":
            action.help = action.help.replace("(required)", "(default: eval-<name> beside the checkpoint's "
                                                            "checkpoints/ folder, else <checkpoint>-eval)")
        elif action.dest in EVAL_DEFAULTS + ("views", "clip_position"):
            action.help = action.help.replace("(default: ", "(default: the fine-tuning run's, else ")
    add_command_flags(e, "torchrun launch")
    e.set_defaults(func=cmd_evaluate, config_flags=flags)


def finetune_config(path: str, flags: dict) -> FinetuneConfig:
    """Preset + flags -> a resolved FinetuneConfig (checkpoint and data read, nothing written)."""
    flat = {**load_yaml(path), **flags}
    return resolve_finetune(FinetuneConfig.from_flat(auto_vocab(flat)))


def cmd_finetune(args: argparse.Namespace) -> int:
    # Our errors (ConfigError, CheckpointError) reach the CLI's handler: one line, exit 2.
    flags = args.config_flags.values(args)
    timeout, check, overwrite = args.timeout, args.check, args.overwrite
    config = finetune_config(args.config, flags)
    check_output_dir(config.output, FINETUNE_OUTPUT, overwrite=overwrite, owner="finetune")
    m = config.model
    print(f"fine-tune: {config.dataset}, {m.num_labels} classes, output {config.output}, {config.nproc_per_node} rank(s), "
          f"clip {m.clip_len}x{m.frame_size} every {config.frame_rate}, {config.epochs} epoch(s), load {config.load}")
    if check:
        print(json.dumps(config.to_flat(), indent=1))
        return 0
    from vimpac_flows.finetune import run_finetune
    from vimpac_flows.server import prefect_api

    with prefect_api():  # a temporary server in its own session: Ctrl-C reaches only this command
        result = run_finetune(config, timeout_s=float(timeout) if timeout is not None else None)
    for kind, summary in result["evaluations"].items():
        for clips, metrics in summary["clips"].items():
            print(json.dumps({"checkpoint": kind, "clips": int(clips),
                              **{k: metrics[k] for k in ("top1", "top5", "mean_class_accuracy", "videos")}}))
    return 0


def _run_defaults(checkpoint: str) -> dict:
    """Clip sampling of the fine-tuning run that wrote ``checkpoint`` (its trainer state), if known."""
    state = Path(checkpoint) / STATE_NAME
    if not state.is_file():
        state = Path(checkpoint).parent / "checkpoints" / "final" / STATE_NAME  # <output>/best
    try:
        saved = json.loads(state.read_text()).get("config") or {}
    except (OSError, ValueError):
        return {}
    out = {k: saved[k] for k in EVAL_DEFAULTS if saved.get(k) is not None}
    if "test_views" in out:
        out["views"] = out.pop("test_views")
    if "test_clip_position" in out:
        out["clip_position"] = out.pop("test_clip_position")
    return out


def evaluate_config(checkpoint: str, flags: dict) -> EvaluateConfig:
    flat = {**_run_defaults(checkpoint), "checkpoint": checkpoint, **flags}
    folder = Path(checkpoint)
    default = folder.parent.parent / f"eval-{folder.name}" if folder.parent.name == "checkpoints" else Path(f"{folder}-eval")
    flat.setdefault("output", str(default))
    if "data" not in flat:
        raise ConfigError("data: give the test shards with --data URI")
    config = EvaluateConfig.from_flat(flat)
    resolve_evaluate(config)
    return config


def cmd_evaluate(args: argparse.Namespace) -> int:
    flags = args.config_flags.values(args)
    timeout, check, overwrite = args.timeout, args.check, args.overwrite
    config = evaluate_config(args.checkpoint, flags)
    check_output_dir(config.output, EVALUATE_OUTPUT, overwrite=overwrite, owner="evaluate")
    print(f"evaluate: {config.checkpoint} on {config.data} (split {config.split}), clips {config.num_test_clips}, "
          f"output {config.output}")
    if check:
        print(json.dumps(config.to_flat(), indent=1))
        return 0
    from vimpac_flows.finetune import run_evaluate
    from vimpac_flows.server import prefect_api

    with prefect_api():
        summary = run_evaluate(config, timeout_s=float(timeout) if timeout is not None else None)
    for clips, metrics in summary["clips"].items():
        print(json.dumps({"clips": int(clips), **{k: metrics[k] for k in ("top1", "top5", "mean_class_accuracy", "videos")}}))
    return 0
