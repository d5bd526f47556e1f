"""`vimpac convert-dalle` and `vimpac train-tokenizer`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from vimpac_cli.flags import ConfigFlags, flat_model
from vimpac_core.errors import ConfigError
from vimpac_core.storage import check_output_dir


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the `vimpac` parser."""
    conv = sub.add_parser("convert-dalle", help="official DALL-E encoder.pkl/decoder.pkl -> safetensors folder",
                          description="Read official dVAE pickles safely (allow-listed classes only) and write "
                                      "<part>.safetensors + dalle.json (with each source's sha256) into OUT.")
    conv.add_argument("sources", nargs="+", metavar="PKL", help="encoder.pkl and/or decoder.pkl (path or URL)")
    conv.add_argument("out", metavar="OUT", help="output folder (created)")
    conv.add_argument("--overwrite", action="store_true", help="write into an OUT that holds other files too")
    conv.set_defaults(func=_convert_dalle, on_interrupt=lambda args: (
        f"files already converted into {args.out} are complete and kept, none is partial"))

    train = sub.add_parser("train-tokenizer", help="train our VQ-VAE tokenizer on frames of a video list",
                           usage="vimpac train-tokenizer LIST --out OUT [--FIELD VALUE ...] [--resume] [--overwrite]",
                           description="Sample frames from the videos of LIST, train a VQ-VAE, checkpoint to OUT "
                                       "(resumable), and write metrics.json + reconstructions.png there. The flags are "
                                       "the fields of the pipeline's train_tokenizer settings, TrainConfig and "
                                       "VQVAEConfig, generated from the models: the defaults train the same tokenizer "
                                       "as `vimpac demo` / the pipeline.")
    train.add_argument("video_list", metavar="LIST", help="video list (CSV, JSONL, Parquet or text list)")
    train.add_argument("--out", required=True, help="output folder: checkpoint/, tokenizer/, metrics, picture")
    train.add_argument("--root", default=None, help="folder/URL relative video paths are resolved against")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    train.add_argument("--overwrite", action="store_true",
                       help="write into an --out that holds other files too (they are kept)")
    train._optionals.title = "command"
    fields = train.add_argument_group("TokenizerTrainSettings, TrainConfig and VQVAEConfig fields")
    flags = ConfigFlags(fields, tokenizer_flags_model(), prog=train.prog)
    train.set_defaults(func=_train_tokenizer, on_interrupt=_kept_checkpoint, config_flags=flags)


def tokenizer_flags_model() -> type[BaseModel]:
    """The flat flags of `vimpac train-tokenizer`: what the pipeline's train_tokenizer settings hold."""
    from vimpac_core.pipeline_config import TokenizerTrainSettings
    from vimpac_core.tokenizers.train import TrainConfig
    from vimpac_core.tokenizers.vqvae import VQVAEConfig

    return flat_model("TrainTokenizerFlags", TokenizerTrainSettings, TrainConfig, VQVAEConfig, exclude=("train", "model"))


def settings_from_flags(values: dict[str, Any]) -> Any:
    """The pipeline's TokenizerTrainSettings of the flags given (unset: the models' defaults)."""
    from vimpac_core.pipeline_config import TokenizerTrainSettings
    from vimpac_core.tokenizers.train import TrainConfig
    from vimpac_core.tokenizers.vqvae import VQVAEConfig

    def pick(model: type[BaseModel]) -> dict[str, Any]:
        return {k: values[k] for k in model.model_fields if k in values}

    train, model = pick(TrainConfig), pick(VQVAEConfig)
    TrainConfig(**train, model=VQVAEConfig(**model))  # a bad value: ConfigError naming it
    return TokenizerTrainSettings(**pick(TokenizerTrainSettings), train={**train, "model": model} if model else train)


def _kept_checkpoint(args: argparse.Namespace) -> str:
    from vimpac_core.tokenizers.train import find_checkpoint

    found = find_checkpoint(Path(args.out))
    if found is None:
        return f"no checkpoint was written yet in {args.out}; run the same command again to start over"
    again = "" if args.resume else " with --resume"
    return f"the checkpoint {found} is kept; run the same command{again} to continue from it"


# What each command writes directly in its output folder (anything else there is someone else's).
DALLE_OUTPUT = ("encoder.*", "decoder.*", "dalle.json")
TRAIN_OUTPUT = ("checkpoint", "tokenizer", "metrics.json", "reconstructions.png", "frames*.npz")


def _convert_dalle(args: argparse.Namespace) -> int:
    from vimpac_core.tokenizers import convert_dalle

    check_output_dir(args.out, DALLE_OUTPUT, overwrite=args.overwrite, owner="convert-dalle")

    for source in args.sources:
        path = convert_dalle(source, args.out)
        print(f"{source} -> {path}")
    return 0


def _train_tokenizer(args: argparse.Namespace) -> int:
    from vimpac_core.inputs import read_video_list
    from vimpac_core.tokenizers.train import find_checkpoint
    from vimpac_flows.server import prefect_api
    from vimpac_flows.train_tokenizer import train_tokenizer_flow

    settings = settings_from_flags(args.config_flags.values(args))
    cfg = settings.train_config()
    # What can be checked before any server starts: flags, the list, the output folder.
    if settings.frame_size % 8:
        raise ConfigError(f"--frame-size: {settings.frame_size} is not a positive multiple of 8 (tokens are 8x8 pixels)")
    read_video_list(args.video_list, root=args.root)
    check_output_dir(args.out, TRAIN_OUTPUT, overwrite=args.overwrite, owner="train-tokenizer")
    if not args.resume and (found := find_checkpoint(Path(args.out))) is not None:
        raise ConfigError(f"{args.out} already holds a checkpoint ({found}): pass --resume to continue it, "
                          "or use another --out")
    with prefect_api():
        metrics = train_tokenizer_flow(video_list=args.video_list, out_dir=args.out, train=cfg,
                                       frame_size=settings.frame_size, frames_per_video=settings.frames_per_video,
                                       fps=settings.fps, resume=args.resume, root=args.root)
    print(json.dumps(metrics, indent=2))
    return 0
