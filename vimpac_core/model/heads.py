"""Heads of the release: mask-then-predict (BERT style) and the contrastive projection on CLS."""

from __future__ import annotations

import torch
from torch import nn

from .attention import LN_EPS
from .config import NCE_DIM, VimpacConfig


class MaskPredictionHead(nn.Module):
    """Linear(D, D), GELU, LayerNorm, then a decoder tied to the token embedding plus its own bias.

    Released names: ``transform.{0,2}``, ``decoder`` (weight = embedding, bias = ``bias``), ``bias``.
    """

    def __init__(self, config: VimpacConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        d, v = config.hid_dim, config.num_embeddings
        self.transform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d, eps=LN_EPS))
        self.decoder = nn.Linear(d, v)
        self.bias = nn.Parameter(torch.zeros(v))
        self.decoder.weight = embedding.weight
        self.decoder.bias = self.bias

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., D] -> logits [..., V + 5]."""
        return self.decoder(self.transform(hidden))


class ProjectionMLP(nn.Module):
    """``nce_proj_layers`` layers: hidden Linear -> BatchNorm1d -> ReLU; last Linear(-> 256, no bias)
    optionally followed by BatchNorm1d. Names ``linear_{i}`` / ``bn_{i}`` as released.

    The BatchNorm layers are plain ``nn.BatchNorm1d`` children, so
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` swaps them in place under DDP.
    """

    def __init__(self, config: VimpacConfig) -> None:
        super().__init__()
        self.num_layers = config.nce_proj_layers
        self.bn_after_proj = config.nce_bn_after_proj
        width = config.hid_dim
        for i in range(self.num_layers - 1):
            setattr(self, f"linear_{i}", nn.Linear(width, config.nce_proj_hid_dim))
            setattr(self, f"bn_{i}", nn.BatchNorm1d(config.nce_proj_hid_dim))
            width = config.nce_proj_hid_dim
        last = self.num_layers - 1
        setattr(self, f"linear_{last}", nn.Linear(width, NCE_DIM, bias=False))
        if self.bn_after_proj:
            setattr(self, f"bn_{last}", nn.BatchNorm1d(NCE_DIM))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, D] -> [N, 256]."""
        for i in range(self.num_layers - 1):
            x = self.relu(getattr(self, f"bn_{i}")(getattr(self, f"linear_{i}")(x)))
        last = self.num_layers - 1
        x = getattr(self, f"linear_{last}")(x)
        if self.bn_after_proj:
            x = getattr(self, f"bn_{last}")(x)
        return x


class ContrastiveHead(nn.Module):
    """Released name ``cls_head`` holding ``mlp``."""

    def __init__(self, config: VimpacConfig) -> None:
        super().__init__()
        self.mlp = ProjectionMLP(config)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        """cls [N, D] -> projection [N, 256] (not normalised; nce_loss normalises)."""
        return self.mlp(cls)
