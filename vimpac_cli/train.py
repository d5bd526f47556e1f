"""`vimpac pretrain CONFIG [--flag value ...]`: pre-train (stage 1, then stage 2 when the preset has one).

The flags are PretrainConfig / VimpacConfig fields with dashes, as in the original scripts
(``--hid-dim 768 --lr 3e-4 --nproc-per-node 8``), generated from the models (every one is listed
below with its default); they override the preset. Values are YAML scalars (``--resume true``,
``--load null``), lists ``a,b``; a bool flag alone means true. Flags apply to every stage;
``--stage2.FIELD value`` (or ``--stage2-FIELD``) changes stage 2 only, e.g. ``--stage2.data
s3://b/tokens256``. The original VIMPAC flags that name a field differently are accepted too
(vimpac/param.py): ``--model efflayoutT,H|W`` (layout T,H|W), ``--epsilon`` (eps),
``--clip-grad-norm`` (grad_clip), ``--fp16`` (amp fp16) and ``--grad-checkpoint``
(gradient_checkpointing); ``--warm-up`` is a fraction below 1 and a number of steps from 1 up, as
there. CONFIG is a path, or a preset name found in the repository's configs/pretrain from any
working directory (``tiny``). Every stage is validated before anything runs; a bad value fails
with a message naming the field. The flow is imported only after that (vimpac_core never imports
Prefect).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from vimpac_cli.common import find_preset
from vimpac_cli.flags import ConfigFlags, flat_model, scalar
from vimpac_core.errors import ConfigError
from vimpac_core.model import VimpacConfig
from vimpac_core.model.config import LAYOUT_PREFIX, layout_from_model_flag
from vimpac_core.storage import check_output_dir
from vimpac_core.train.config import PretrainConfig, parse_stages
from vimpac_core.train.preflight import check_pretrain

# What a stage writes directly in its output folder (anything else there is someone else's).
STAGE_OUTPUT = ("checkpoints", "tensorboard", "metrics.json", "run_config.json", "failure-rank*.json")
# The original VIMPAC flags (vimpac/param.py) that name one of our fields otherwise: field -> flag.
RENAMES = {"eps": "epsilon", "grad-clip": "clip-grad-norm", "gradient-checkpointing": "grad-checkpoint"}


def _layout(value: Any) -> tuple[str, Any]:
    layout = layout_from_model_flag(str(value))
    if layout is None:
        raise ConfigError(f"--model: {value!r} is not an original --model value; use {LAYOUT_PREFIX}<layout>, "
                          f"e.g. {LAYOUT_PREFIX}T,H|W")
    return "layout", layout


# Original flags whose value becomes another field's: flag -> (metavar, help, value -> (field, value)).
TRANSFORMS: dict[str, tuple[str, str, Callable[[Any], tuple[str, Any]]]] = {
    "model": (f"{LAYOUT_PREFIX}LAYOUT", f"the original --model: {LAYOUT_PREFIX}T,H|W sets --layout T,H|W", _layout),
    "fp16": ("bool", "the original --fp16: --amp fp16 (false: --amp none)",
             lambda v: ("amp", "fp16" if v is True else "none" if v is False else v)),
}


class TrainingFlags:
    """The flags of a training config: its fields and VimpacConfig's (flat, generated), the original
    VIMPAC names, and with ``stages`` the same flags again as ``--stage2.FIELD`` (hidden in --help)."""

    def __init__(self, parser: argparse.ArgumentParser, config_cls: type[BaseModel], *, stages: bool,
                 exclude: tuple[str, ...] = (), required_note: str = "(required: here or in the config)") -> None:
        models = (config_cls, VimpacConfig) if "model" in config_cls.model_fields else (config_cls,)
        title = " and ".join(m.__name__ for m in models) + " fields" + (" (they override the config)" if len(models) > 1 else "")
        model = flat_model(f"{config_cls.__name__}Flags", *models, exclude=("model", *exclude))
        self.sets = {"": ConfigFlags(parser.add_argument_group(title), model, aliases=RENAMES,
                                     required_note=required_note, prog=parser.prog)}
        self.transforms = TRANSFORMS if len(models) > 1 else {}  # --model, --fp16: of the model's fields
        self._add_transforms(parser.add_argument_group("original VIMPAC flags (aliases)"), "")
        if stages:
            self.sets["stage2."] = ConfigFlags(parser, model, prefix="stage2", aliases=RENAMES, hidden=True)
            self._add_transforms(parser, "stage2.")

    def _add_transforms(self, group: Any, prefix: str) -> None:
        for name, (metavar, text, _) in self.transforms.items():
            flags = [f"--{prefix}{name}"] + ([f"--stage2-{name}"] if prefix else [])
            bare = {"nargs": "?", "const": "true"} if metavar == "bool" else {}  # --fp16 alone means true
            group.add_argument(*flags, dest=f"{prefix}{name}!", metavar=metavar, **bare,
                               help=argparse.SUPPRESS if prefix else text)

    def values(self, namespace: argparse.Namespace) -> dict[str, Any]:
        """{field: value, 'stage2.field': value} of the flags given (original names mapped to fields)."""
        out: dict[str, Any] = {}
        for prefix, flags in self.sets.items():
            values = flags.values(namespace)
            for name, (_, _, transform) in self.transforms.items():
                raw = getattr(namespace, f"{prefix}{name}!", None)
                if raw is not None:
                    field, value = transform(scalar(raw))
                    values[field] = value
            out.update({f"{prefix}{k}": v for k, v in values.items()})
        return out


def add_command_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """--timeout, --check, --overwrite: flags of the command, not of the config."""
    group = parser.add_argument_group("command")
    group.add_argument("--timeout", type=float, metavar="S", help=f"seconds per {what} (default: no limit)")
    group.add_argument("--check", action="store_true", help="validate and print the resolved config; run nothing")
    group.add_argument("--overwrite", action="store_true",
                       help="write into output folders that hold other files too (they are kept)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `pretrain` to the `vimpac` parser."""
    p = sub.add_parser(
        "pretrain",
        help="pre-train on token shards (Prefect flow; torchrun per stage)",
        description=__doc__,
        usage="vimpac pretrain CONFIG [--FIELD VALUE ...] [--stage2.FIELD VALUE ...] [--timeout S] [--check] [--overwrite]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="preset YAML or name, e.g. configs/pretrain/small.yaml or tiny")
    flags = TrainingFlags(p, PretrainConfig, stages=True)
    add_command_flags(p, "stage")
    p.set_defaults(func=cmd_pretrain, on_interrupt=_kept_checkpoints, config_flags=flags)


def parse_flags(tokens: list[str], command: str = "pretrain") -> dict[str, Any]:
    """The config values `vimpac COMMAND CONFIG TOKENS...` sets, parsed as the command parses them:
    ['--hid-dim', '768', '--resume', '--stage2.data', 'x'] -> {'hid_dim': 768, 'resume': True,
    'stage2.data': 'x'}. Raises UsageError (a ConfigError) for an unknown flag."""
    from vimpac_cli import parse_command_line

    args = parse_command_line([command, "CONFIG", *tokens])
    return args.config_flags.values(args)


def _kept_checkpoints(args: argparse.Namespace) -> str:
    from vimpac_core.train.checkpoint import latest_checkpoint

    found = [c for s in getattr(args, "stages", []) if (c := latest_checkpoint(s.checkpoint_dir)) is not None]
    if not found:
        return "no checkpoint was written yet; run the same command again to start over"
    return f"the checkpoints up to {found[-1]} are kept; run the same command with --resume true to continue"


def cmd_pretrain(args: argparse.Namespace) -> int:
    # Our errors (ConfigError) reach the CLI's handler: one line, exit 2, before any server starts.
    flags = args.config_flags.values(args)
    timeout, check, overwrite = args.timeout, args.check, args.overwrite
    stages = parse_stages(find_preset(args.config, "pretrain"), flags)
    for stage in stages:  # data folders exist, hold committed shards, fit frame_size and vocab_size
        check_pretrain(stage)
        check_output_dir(stage.output, STAGE_OUTPUT, overwrite=overwrite, owner="pretrain")
    args.stages = stages  # for the line an interrupted run ends with
    for number, stage in enumerate(stages, start=1):
        print(f"stage {number}: output {stage.output}, {stage.nproc_per_node} rank(s), "
              f"frame {stage.model.frame_size}, {stage.epochs} epoch(s), load {stage.load}")
    if check:
        print(json.dumps([s.to_flat() for s in stages], indent=1))
        return 0
    from vimpac_flows.pretrain import run_pretrain
    from vimpac_flows.server import prefect_api

    with prefect_api():
        results = run_pretrain(stages, timeout_s=float(timeout) if timeout is not None else None)
    for r in results:
        summary = {k: r.get(k) for k in ("stage", "step", "epoch", "loss", "mask_accuracy", "checkpoint")}
        print(json.dumps(summary))
    return 0
