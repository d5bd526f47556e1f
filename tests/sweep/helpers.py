"""Real checkpoint folders (train/checkpoint.save_checkpoint of a tiny model) and pre-training output layouts."""

from __future__ import annotations

from pathlib import Path

import torch

from vimpac_core.model import VimpacConfig, VimpacForPreTraining
from vimpac_core.shards.synthetic import token_rows, write_token_shards
from vimpac_core.train.checkpoint import TrainerState, capture_rng, save_checkpoint
from vimpac_core.train.optim import build_optimizer

TINY = VimpacConfig(layers=1, hid_dim=128, frame_size=32, clip_len=2, vocab_size=64, nce_proj_hid_dim=64)


def save_tiny_checkpoint(folder: Path, step: int, seed: int = 0) -> Path:
    """A complete training checkpoint at ``folder`` (its parent gets the ``latest`` pointer)."""
    torch.manual_seed(seed + step)
    model = VimpacForPreTraining(TINY)
    optimizer = build_optimizer(model, lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.05)
    return save_checkpoint(folder, model, optimizer, TrainerState(epoch=0, step=step), [capture_rng()])


def labelled_shards(root: Path, videos: int, seed: int) -> str:
    """Token shards (vocab 64, 4x4 grid, 6 frames) of ``videos`` videos labelled 0/1; returns the folder."""
    write_token_shards(str(root), token_rows(videos, grid=4, frames=6, vocab_size=64, num_labels=2, seed=seed),
                       rows_per_shard=8, row_group_size=4)
    return str(root)
