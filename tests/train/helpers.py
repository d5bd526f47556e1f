"""Tiny shards and tiny pre-training configs shared by the training tests."""

from __future__ import annotations

from pathlib import Path

from tests.token_shards import token_rows, write_token_shards
from vimpac_core.train.config import PretrainConfig

VOCAB = 64


def tiny_shards(root: Path, *, videos: int = 16, grid: int = 4, frames=(4, 6, 9)) -> str:
    """Random token shards (vocab 64) at a grid x grid token grid; returns the folder URL."""
    write_token_shards(str(root), token_rows(videos, grid=grid, frames=list(frames), vocab_size=VOCAB),
                       rows_per_shard=8, row_group_size=4)
    return str(root)


def tiny_flat(data: str, output: str, **over) -> dict:
    """Flat config of a 1-layer, 128-wide model at frame 32 (4x4 tokens), clip of 2 frames."""
    flat = dict(
        layers=1, hid_dim=128, frame_size=32, clip_len=2, vocab_size=VOCAB, nce_proj_hid_dim=64, mask_blocks=2,
        frame_rate=1, data=data, output=output, bs_per_gpu=2, num_workers=0, epochs=2, log_every=1,
        device="cpu", seed=3,
    )
    flat.update(over)
    return flat


def tiny_config(data: str, output: str, **over) -> PretrainConfig:
    return PretrainConfig.from_flat(tiny_flat(data, output, **over))
