"""`vimpac import-checkpoint SRC DST`: a released VIMPAC snapshot -> our checkpoint folder."""

from __future__ import annotations

import argparse

from vimpac_core.errors import OutputExistsError
from vimpac_core.storage import check_output_dir


def import_checkpoint(args: argparse.Namespace) -> int:
    """Load SRC (folder or .zip with classifier.pt + args.pickle/args.txt) and save it to DST."""
    from vimpac_core.model import load_original_checkpoint
    from vimpac_core.model.pretrained import CONFIG_NAME, WEIGHTS_NAME

    ours = check_output_dir(args.dst, [CONFIG_NAME, WEIGHTS_NAME], overwrite=args.overwrite,
                            owner="import-checkpoint")
    if ours and not args.overwrite:
        raise OutputExistsError(f"{args.dst} already holds a model ({', '.join(ours)}); pass --overwrite to "
                                "replace it, or give a new folder")
    model = load_original_checkpoint(args.src)  # errors: one line and exit 2 (cli.main)
    out = model.save_pretrained(args.dst)  # replaces only config.json and model.safetensors
    c = model.config
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{type(model).__name__}: layers={c.layers} hid_dim={c.hid_dim} layout={c.layout} pos_emb={c.pos_emb} "
        f"frame_size={c.frame_size} clip_len={c.clip_len} ({params / 1e6:.1f}M parameters) -> {out}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the `vimpac` parser."""
    p = sub.add_parser(
        "import-checkpoint",
        help="convert a released VIMPAC snapshot (folder or zip) to config.json + model.safetensors",
    )
    p.add_argument("src", help="released snapshot: a folder or .zip holding classifier.pt and args.pickle/args.txt")
    p.add_argument("dst", help="output folder (written atomically); refused if it holds anything else")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a model already in DST; other files there are kept")
    p.set_defaults(func=import_checkpoint, on_interrupt=lambda args: f"nothing was written to {args.dst}")
