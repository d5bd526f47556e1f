"""The VIMPAC backbone: token codes [B, T, H, W] -> (cls [B, D], hidden [B, T, H, W, D]).

Module and parameter names follow the released checkpoint (``backbone.`` prefix there), so a
released state_dict loads with ``strict=True``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import LN_EPS, AttentionBlock
from .config import VimpacConfig
from .pretrained import INIT_STD, PreTrainedMixin, init_weights


def _table(rows: int, dim: int, std: float) -> nn.Parameter:
    return nn.Parameter(torch.randn(rows, dim) * std)


class PositionalEmbedding(nn.Module):
    """The three positional variants of the release; tables are [positions, D].

    Init as the original: N(0, 0.02) for the ``default`` table (CLS row included) and the CLS
    position; tables summed per token get 0.02 / sqrt(2) (temporal + spatial) or 0.02 / sqrt(3)
    (temporal + height + width), so every token's position has std 0.02.
    """

    def __init__(self, config: VimpacConfig) -> None:
        super().__init__()
        t, h, w = config.grid_shape
        d = config.hid_dim
        self.variant = config.pos_emb
        if self.variant == "default":
            self.positional_embedding = _table(1 + t * h * w, d, INIT_STD)
        else:
            self.cls_pos_embedding = _table(1, d, INIT_STD)
            if self.variant == "temporal_separation":
                std = INIT_STD / math.sqrt(2)
                self.temporal_pos_embedding = _table(t, d, std)
                self.spatial_pos_embedding = _table(h * w, d, std)
            else:
                std = INIT_STD / math.sqrt(3)
                self.temporal_pos_embedding = _table(t, d, std)
                self.height_pos_embedding = _table(h, d, std)
                self.width_pos_embedding = _table(w, d, std)

    def forward(self, t: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (cls position [D], token positions [T, H, W, D])."""
        if self.variant == "default":
            return self.positional_embedding[0], self.positional_embedding[1:].reshape(t, h, w, -1)
        temporal = self.temporal_pos_embedding[:, None, None, :]
        if self.variant == "temporal_separation":
            spatial = self.spatial_pos_embedding.reshape(1, h, w, -1)
        else:
            spatial = self.height_pos_embedding[None, :, None, :] + self.width_pos_embedding[None, None, :, :]
        return self.cls_pos_embedding[0], temporal + spatial


class MLP(nn.Module):
    """Linear(D -> 4D or 2D), exact GELU, Linear(-> D), dropout (released names c_fc / c_proj)."""

    def __init__(self, config: VimpacConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.hid_dim, config.mlp_dim)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(config.mlp_dim, config.hid_dim)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.c_proj(self.gelu(self.c_fc(x))))


class ResidualBlock(nn.Module):
    """The attention blocks of the layout in order, then the MLP (same weights for CLS and tokens)."""

    def __init__(self, config: VimpacConfig) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(AttentionBlock(config, axes) for axes in config.blocks)
        self.mlp = MLP(config)
        self.ln = nn.LayerNorm(config.hid_dim, eps=LN_EPS)
        self.pre_activation = config.pre_activation

    def forward(
        self, cls: torch.Tensor, x: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cls [B, D], x [B, T, H, W, D], keep [B, T, H, W] -> same shapes (tokens [M, D] with rows)."""
        last = len(self.attention_blocks) - 1
        for i, block in enumerate(self.attention_blocks):
            cls, x = block(cls, x, keep, rows if i == last else None)
        if self.pre_activation:
            return cls + self.mlp(self.ln(cls)), x + self.mlp(self.ln(x))
        return self.ln(cls + self.mlp(cls)), self.ln(x + self.mlp(x))


class Transformer(nn.Module):
    def __init__(self, config: VimpacConfig) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualBlock(config) for _ in range(config.layers))
        self.gradient_checkpointing = config.gradient_checkpointing

    def forward(
        self, cls: torch.Tensor, x: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        last = len(self.resblocks) - 1
        for i, block in enumerate(self.resblocks):
            block_rows = rows if i == last else None
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                cls, x = checkpoint(block, cls, x, keep, block_rows, use_reentrant=False)
            else:
                cls, x = block(cls, x, keep, block_rows)
        return cls, x


class VimpacModel(PreTrainedMixin, nn.Module):
    """The backbone: embedding, positions, ``layers`` residual blocks; see MODEL.md "Backbone"."""

    def __init__(self, config: VimpacConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hid_dim
        self.cls_param = nn.Parameter(torch.zeros(d))
        self.embedding = nn.Embedding(config.num_embeddings, d)
        self.positional_embedding = PositionalEmbedding(config)
        if config.pre_activation:
            self.ln_post = nn.LayerNorm(d, eps=LN_EPS)
        else:
            self.ln_pre = nn.LayerNorm(d, eps=LN_EPS)
        self.drop = nn.Dropout(config.dropout)
        self.transformer = Transformer(config)
        self.apply(init_weights)
        if config.pre_activation:
            self._scale_residual_projections()

    def _scale_residual_projections(self) -> None:
        """Pre-activation init of the original: the layers that write into the residual stream (each
        attention block's ``dense``, each MLP's ``c_proj``) get N(0, 0.02 / sqrt(how many there are))."""
        blocks = self.transformer.resblocks
        std = INIT_STD / math.sqrt(sum(len(block.attention_blocks) + 1 for block in blocks))
        for block in blocks:
            nn.init.normal_(block.mlp.c_proj.weight, std=std)
            for attention_block in block.attention_blocks:
                nn.init.normal_(attention_block.dense.weight, std=std)

    def forward(self, codes: torch.Tensor, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """codes [B, T, H, W] long -> (cls [B, D], hidden [B, T, H, W, D]).

        rows [B, T, H, W] bool: hidden [M, D] at those positions only (as ``hidden[rows]``). Nothing
        reads the other tokens' last outputs, so the last block's per-token layers (attention
        output, MLP) skip them. Pre-training predicts ~15% of the tokens: the small model's step then
        does ~8% fewer FLOPs (bench/README.md).
        """
        if codes.dim() != 4 or tuple(codes.shape[1:]) != self.config.grid_shape:
            raise ValueError(
                f"codes of shape {tuple(codes.shape)} do not fit the model: expected [B, "
                f"{', '.join(map(str, self.config.grid_shape))}] (clip_len, frame_size // downsample x2)"
            )
        keep = codes != self.config.pad_id
        pos_cls, pos = self.positional_embedding(*codes.shape[1:])
        x = self.embedding(codes) + pos
        cls = (self.cls_param + pos_cls).expand(codes.shape[0], -1)
        if not self.config.pre_activation:
            cls, x = self.ln_pre(cls), self.ln_pre(x)
        cls, x = self.transformer(self.drop(cls), self.drop(x), keep, rows)
        if self.config.pre_activation:
            cls, x = self.ln_post(cls), self.ln_post(x)
        return cls, x
