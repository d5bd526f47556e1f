"""`vimpac import-checkpoint SRC DST`: a released VIMPAC snapshot -> our checkpoint folder."""

from __future__ import annotations

import argparse


def import_checkpoint(args: argparse.Namespace) -> int:
    """Load SRC (folder or .zip with classifier.pt + args.pickle/args.txt) and save it to DST."""
    from vimpac_core.model import load_original_checkpoint

    model = load_original_checkpoint(args.src)  # errors: one line and exit 2 (cli.main)
    out = model.save_pretrained(args.dst)
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
    p.add_argument("dst", help="output folder (written atomically)")
    p.set_defaults(func=import_checkpoint)
