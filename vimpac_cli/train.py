"""`vimpac pretrain CONFIG [--flag value ...]`: pre-train (stage 1, then stage 2 when the preset has one).

Flags are PretrainConfig / VimpacConfig field names with dashes, as in the original scripts
(``--hid-dim 768 --lr 3e-4 --nproc-per-node 8``); values are parsed as YAML scalars
(``--resume true``, ``--views a,b``); a flag with no value means true. Flags apply to every
stage; ``--stage2.FIELD value`` changes stage 2 only (e.g. ``--stage2.data s3://b/tokens256``).
The original VIMPAC flags that name a field differently are accepted too (vimpac/param.py):
``--model efflayoutT,H|W`` (layout T,H|W), ``--epsilon`` (eps), ``--clip-grad-norm`` (grad_clip),
``--fp16`` (amp fp16) and ``--grad-checkpoint`` (gradient_checkpointing); ``--warm-up`` is a
fraction below 1 and a number of steps from 1 up, as there. Three flags belong to the
command, not the config: ``--timeout S`` (seconds per stage), ``--check`` (validate and print
the stages, run nothing) and ``--overwrite`` (write into output folders that hold other files too;
they are kept). CONFIG is a path, or a preset name found in the repository's configs/pretrain
from any working directory (``tiny``). Every stage is validated before anything runs; a bad value fails with
a message naming the field. The flow is imported only after that (vimpac_core never imports Prefect).
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Callable
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel

from vimpac_cli.common import find_preset
from vimpac_core.errors import ConfigError
from vimpac_core.model import VimpacConfig
from vimpac_core.model.config import LAYOUT_PREFIX, layout_from_model_flag
from vimpac_core.storage import check_output_dir
from vimpac_core.train.config import PretrainConfig, parse_stages
from vimpac_core.train.preflight import check_pretrain

COMMAND_FLAGS = {"timeout": None, "check": False, "overwrite": False}
# What a stage writes directly in its output folder (anything else there is someone else's).
STAGE_OUTPUT = ("checkpoints", "tensorboard", "metrics.json", "run_config.json", "failure-rank*.json")
def _layout(value: Any) -> tuple[str, Any]:
    layout = layout_from_model_flag(str(value))
    if layout is None:
        raise ConfigError(f"model: {value!r} is not an original --model value; use {LAYOUT_PREFIX}<layout>, "
                          f"e.g. {LAYOUT_PREFIX}T,H|W")
    return "layout", layout


# Original flag (underscored) -> (field, value) for the ones our config names differently.
ALIASES: dict[str, Callable[[Any], tuple[str, Any]]] = {
    "model": _layout,
    "epsilon": lambda v: ("eps", v),
    "clip_grad_norm": lambda v: ("grad_clip", v),
    "fp16": lambda v: ("amp", "fp16" if v is True else "none" if v is False else v),
    "grad_checkpoint": lambda v: ("gradient_checkpointing", v),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add `pretrain` to the `vimpac` parser."""
    p = sub.add_parser(
        "pretrain",
        help="pre-train on token shards (Prefect flow; torchrun per stage)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="preset YAML, e.g. configs/pretrain/small.yaml")
    p.add_argument("flags", nargs=argparse.REMAINDER, help="--field-name value ... (config fields, dashes for _)")
    p.set_defaults(func=cmd_pretrain, on_interrupt=_kept_checkpoints)


def _list_fields(config_cls: type[BaseModel]) -> set[str]:
    fields = {**config_cls.model_fields, **VimpacConfig.model_fields}
    return {
        name for name, f in fields.items()
        if get_origin(f.annotation) is list or any(get_origin(a) is list for a in get_args(f.annotation))
    }


def parse_flags(
    tokens: list[str], config_cls: type[BaseModel] = PretrainConfig, *, stages: bool = True,
    command_flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """['--hid-dim', '768', '--resume', '--stage2.data', 'x'] -> {'hid_dim': 768, 'resume': True,
    'stage2.data': 'x'}; original flag names (ALIASES) map to their fields; unknown names fail.
    ``config_cls``'s fields (and VimpacConfig's) are the flags; ``stages``: --stage2.* allowed."""
    command_flags = COMMAND_FLAGS if command_flags is None else command_flags
    known = set(config_cls.model_fields) | set(VimpacConfig.model_fields) | set(command_flags)
    known.discard("model")
    lists = _list_fields(config_cls)
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) < 3:
            raise ConfigError(f"unexpected argument {token!r}: flags look like --field-name value")
        name, _, inline = token[2:].partition("=")
        name = name.replace("-", "_")
        # --stage2.<field> (or --stage2-<field>) changes stage 2 only, e.g. its frame-256 data.
        stage2 = stages and name.startswith(("stage2.", "stage2_"))
        if stage2:
            name = name[len("stage2."):]
        if name not in known and name not in ALIASES or (stage2 and name in command_flags):
            close = difflib.get_close_matches(name, sorted(known), n=3)
            raise ConfigError(f"{name}: no such config field" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        if inline:
            raw, i = inline, i + 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            raw, i = tokens[i + 1], i + 2
        else:
            raw, i = "true", i + 1
        value = yaml.safe_load(raw)
        if isinstance(value, str):
            value = _number(value)
        if name in ALIASES:
            name, value = ALIASES[name](value)
        if name in lists and isinstance(value, str):
            value = [v for v in value.split(",") if v]
        out[f"stage2.{name}" if stage2 else name] = value
    return out


def _number(text: str) -> Any:
    """YAML 1.1 reads 3e-4 as a string; flags mean numbers there."""
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text


def _kept_checkpoints(args: argparse.Namespace) -> str:
    from vimpac_core.train.checkpoint import latest_checkpoint

    found = [c for s in getattr(args, "stages", []) if (c := latest_checkpoint(s.checkpoint_dir)) is not None]
    if not found:
        return "no checkpoint was written yet; run the same command again to start over"
    return f"the checkpoints up to {found[-1]} are kept; run the same command with --resume true to continue"


def cmd_pretrain(args: argparse.Namespace) -> int:
    # Our errors (ConfigError) reach the CLI's handler: one line, exit 2, before any server starts.
    flags = parse_flags(args.flags)
    timeout = flags.pop("timeout", None)
    check = bool(flags.pop("check", False))
    overwrite = bool(flags.pop("overwrite", False))
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
