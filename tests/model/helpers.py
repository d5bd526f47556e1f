"""Small shared builders for the model tests."""

from __future__ import annotations

from argparse import Namespace

import torch

from vimpac_core.model import VimpacConfig

FLAG_FIELDS = ("layers", "hid_dim", "layout", "pos_emb", "pre_activation", "halve_att", "halve_mlp",
               "frame_size", "clip_len", "vocab_size", "nce_proj_layers", "nce_proj_hid_dim", "nce_bn_after_proj")


def config_from(f: Namespace, **extra) -> VimpacConfig:
    """Our config for the reference's flags."""
    return VimpacConfig(**{k: getattr(f, k) for k in FLAG_FIELDS}, **extra)


def random_codes(config: VimpacConfig, batch: int, seed: int = 0, pad_fraction: float = 0.2) -> torch.Tensor:
    """codes [batch, T, H, W] with visual tokens and some PAD (whole trailing frames of sample 0 too)."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, config.vocab_size, (batch, *config.grid_shape), generator=g)
    pad = torch.rand(codes.shape, generator=g) < pad_fraction
    codes[pad] = config.pad_id
    codes[0, -1] = config.pad_id  # a padded frame: lines along H/W that are all PAD
    return codes
