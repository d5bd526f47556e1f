"""`vimpac convert-dalle` and `vimpac train-tokenizer`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
                           description="Sample frames from the videos of LIST, train a VQ-VAE, checkpoint to OUT "
                                       "(resumable), and write metrics.json + reconstructions.png there.")
    train.add_argument("video_list", metavar="LIST", help="video list (CSV, JSONL, Parquet or text list)")
    train.add_argument("--out", required=True, help="output folder: checkpoint/, tokenizer/, metrics, picture")
    train.add_argument("--steps", type=int, default=2000, help="optimizer steps (default: 2000)")
    train.add_argument("--batch-size", type=int, default=32, help="frames per step (default: 32)")
    train.add_argument("--frame-size", type=int, default=64, help="square frame side in pixels, multiple of 8")
    train.add_argument("--frames-per-video", type=int, default=16, help="frames sampled from each video")
    train.add_argument("--fps", type=float, default=2.0, help="frame sampling rate (frames per second)")
    train.add_argument("--codebook-size", type=int, default=512, help="number of codes (vocab)")
    train.add_argument("--channels", type=int, nargs=3, default=(64, 128, 128), help="encoder stage widths")
    train.add_argument("--embed-dim", type=int, default=64, help="code vector dimension")
    train.add_argument("--num-res-blocks", type=int, default=2, help="residual blocks at 1/8 resolution")
    train.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    train.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    train.add_argument("--log-every", type=int, default=50, help="steps between logged metrics")
    train.add_argument("--root", default=None, help="folder/URL relative video paths are resolved against")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if present")
    train.add_argument("--overwrite", action="store_true",
                       help="write into an --out that holds other files too (they are kept)")
    train.set_defaults(func=_train_tokenizer, on_interrupt=_kept_checkpoint)


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
    from vimpac_core.tokenizers.train import TrainConfig, find_checkpoint
    from vimpac_core.tokenizers.vqvae import VQVAEConfig
    from vimpac_flows.server import prefect_api
    from vimpac_flows.train_tokenizer import train_tokenizer_flow

    model = VQVAEConfig(codebook_size=args.codebook_size, channels=tuple(args.channels), embed_dim=args.embed_dim,
                        num_res_blocks=args.num_res_blocks)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      checkpoint_every=args.checkpoint_every, log_every=args.log_every, model=model)
    # What can be checked before any server starts: flags, the list, the output folder.
    if args.frame_size <= 0 or args.frame_size % 8:
        raise ConfigError(f"--frame-size: {args.frame_size} is not a positive multiple of 8 (tokens are 8x8 pixels)")
    read_video_list(args.video_list, root=args.root)
    check_output_dir(args.out, TRAIN_OUTPUT, overwrite=args.overwrite, owner="train-tokenizer")
    if not args.resume and (found := find_checkpoint(Path(args.out))) is not None:
        raise ConfigError(f"{args.out} already holds a checkpoint ({found}): pass --resume to continue it, "
                          "or use another --out")
    with prefect_api():
        metrics = train_tokenizer_flow(video_list=args.video_list, out_dir=args.out, train=cfg,
                                       frame_size=args.frame_size, frames_per_video=args.frames_per_video,
                                       fps=args.fps, resume=args.resume, root=args.root)
    print(json.dumps(metrics, indent=2))
    return 0
