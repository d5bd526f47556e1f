"""Axis attention of VIMPAC: every line of tokens along one axis is a sequence, with CLS prepended.

Parameter names follow the released checkpoint (``attentions.{k}.attention.{query,key,value}``,
``output.dense``, ``output.LayerNorm``; ``dense``, ``LayerNorm`` in the pre-activation variant).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VimpacConfig

LN_EPS = 1e-12
_AXIS_DIM = {"T": 1, "H": 2, "W": 3}  # position of the axis in [B, T, H, W, d]


class QKV(nn.Module):
    """The three projections of one pattern (released name: ``attention``)."""

    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, width)
        self.key = nn.Linear(dim, width)
        self.value = nn.Linear(dim, width)


class AxisAttention(nn.Module):
    """Multi-head attention along one axis of the token grid.

    Every line along ``axis`` (other indices fixed) is one sequence [CLS, tokens...]; keys whose
    token is PAD are ignored, CLS never. The new CLS is the mean of the CLS outputs over all lines.
    """

    def __init__(self, dim: int, width: int, heads: int, axis: str, dropout: float) -> None:
        super().__init__()
        self.attention = QKV(dim, width)
        self.heads, self.axis, self.dropout = heads, axis, dropout

    def fused_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Query, key and value stacked: weight [3d, D], bias [3d] (one matmul instead of three)."""
        p = self.attention
        return (torch.cat([p.query.weight, p.key.weight, p.value.weight]),
                torch.cat([p.query.bias, p.key.bias, p.value.bias]))

    def forward(
        self, cls: torch.Tensor, x: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cls [B, D], x [B, T, H, W, D], keep [B, T, H, W] bool (False = PAD) -> ([B, d], [B, T, H, W, d])."""
        weight, bias = self.fused_weights()
        return self.attend(F.linear(cls, weight, bias), F.linear(x, weight, bias), keep)

    def attend(
        self, cls_qkv: torch.Tensor, x_qkv: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected cls_qkv [B, 3d], x_qkv [B, T, H, W, 3d] (query|key|value) -> ([B, d], [B, T, H, W, d])."""
        a = _AXIS_DIM[self.axis]
        order = [0] + [d for d in (1, 2, 3) if d != a] + [a]
        xl = x_qkv.permute(*order, 4)  # [B, o1, o2, L, 3d]: lines along the axis last but one
        b, o1, o2, length, _ = xl.shape
        lines = o1 * o2
        c = cls_qkv[:, None, None, :].expand(b, lines, 1, cls_qkv.shape[-1])
        seq = torch.cat([c, xl.reshape(b, lines, length, -1)], dim=2)  # [B, lines, 1+L, 3d]
        seq = seq.reshape(b * lines, 1 + length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        key_keep = keep.permute(*order).reshape(b * lines, length)
        key_keep = torch.cat([key_keep.new_ones(b * lines, 1), key_keep], dim=1)[:, None, None, :]
        out = F.scaled_dot_product_attention(
            seq[0], seq[1], seq[2], attn_mask=key_keep, dropout_p=self.dropout if self.training else 0.0
        )  # [B*lines, heads, 1+L, head_dim]
        out = out.transpose(1, 2).reshape(b, lines, 1 + length, -1)
        new_cls = out[:, :, 0].mean(dim=1)
        tokens = out[:, :, 1:].reshape(b, o1, o2, length, -1)
        inverse = [order.index(d) for d in range(4)] + [4]
        return new_cls, tokens.permute(*inverse)


class AttentionOutput(nn.Module):
    """Released names ``output.dense`` / ``output.LayerNorm`` (post-LN blocks; BERT's BertSelfOutput)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=LN_EPS)  # noqa: N815 (released checkpoint name)


class AttentionBlock(nn.Module):
    """One ``,``-separated block of the layout: parallel axis patterns, concat, dense, residual."""

    def __init__(self, config: VimpacConfig, axes: list[str]) -> None:
        super().__init__()
        k = len(axes)
        width, heads = config.att_dim // k, config.num_heads // k
        self.attentions = nn.ModuleList(
            AxisAttention(config.hid_dim, width, heads, axis, config.dropout) for axis in axes
        )
        if config.pre_activation:  # the original's pre-activation block holds them itself (D -> D)
            self.dense = nn.Linear(config.hid_dim, config.hid_dim)
            self.LayerNorm = nn.LayerNorm(config.hid_dim, eps=LN_EPS)  # noqa: N815 (released checkpoint name)
        else:
            self.output = AttentionOutput(config.att_dim, config.hid_dim)
        self.drop = nn.Dropout(config.dropout)
        self.pre_activation = config.pre_activation

    def forward(
        self, cls: torch.Tensor, x: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cls [B, D], x [B, T, H, W, D] -> same shapes."""
        owner = self if self.pre_activation else self.output  # holder of dense / LayerNorm (released names)
        if self.pre_activation:
            # Released quirk: the residual adds the normalised input, not the raw one.
            cls, x = owner.LayerNorm(cls), owner.LayerNorm(x)
        # One matmul projects query/key/value of every parallel pattern.
        fused = [att.fused_weights() for att in self.attentions]
        weight, bias = torch.cat([w for w, _ in fused]), torch.cat([b for _, b in fused])
        cls_qkv, x_qkv = F.linear(cls, weight, bias), F.linear(x, weight, bias)
        step = weight.shape[0] // len(self.attentions)
        outs = [
            att.attend(cls_qkv[..., i * step:(i + 1) * step], x_qkv[..., i * step:(i + 1) * step], keep)
            for i, att in enumerate(self.attentions)
        ]
        att_cls = torch.cat([o[0] for o in outs], dim=-1)
        att_x = torch.cat([o[1] for o in outs], dim=-1)
        new_cls = cls + self.drop(owner.dense(att_cls))
        new_x = x + self.drop(owner.dense(att_x))
        if self.pre_activation:
            return new_cls, new_x
        return owner.LayerNorm(new_cls), owner.LayerNorm(new_x)
