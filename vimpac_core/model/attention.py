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
        b, o1, o2, length, width = xl.shape
        # A single copy gathers every line with its CLS in front (reshaping the permuted lines
        # first would copy them twice along H and W).
        seq = torch.cat([cls_qkv[:, None, None, None, :].expand(b, o1, o2, 1, width), xl], dim=3)
        seq = seq.view(b * o1 * o2, 1 + length, 3, self.heads, -1)
        # unbind, not seq[i]: its backward stacks the three gradients in one pass, where indexing
        # zero-fills a full-size buffer per index and sums them. SDPA reads the strided views as they are.
        q, k, v = (t.transpose(1, 2) for t in seq.unbind(dim=2))  # each [B*lines, heads, 1+L, head_dim]
        key_keep = torch.cat([keep.new_ones(b, o1, o2, 1), keep.permute(*order)], dim=3)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_keep.view(-1, 1, 1, 1 + length),
            dropout_p=self.dropout if self.training else 0.0,
        )
        # SDPA's CPU kernel stores its output as [N, 1+L, heads, head_dim]: this transpose is free.
        out = out.transpose(1, 2).reshape(b, o1, o2, 1 + length, -1)
        # split, not out[..., 0] / out[..., 1:]: backward concatenates instead of zero-filling twice.
        cls_out, tokens = out.split([1, length], dim=3)
        inverse = [order.index(d) for d in range(4)] + [4]
        return cls_out.mean(dim=(1, 2, 3)), tokens.permute(*inverse)


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
        self, cls: torch.Tensor, x: torch.Tensor, keep: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cls [B, D], x [B, T, H, W, D] -> same shapes; with rows [B, T, H, W] bool, tokens [M, D]
        at those positions only (order of ``x[rows]``): every token still serves as key and value,
        but the dense layer and LayerNorm run on the rows that are read afterwards."""
        owner = self if self.pre_activation else self.output  # holder of dense / LayerNorm (released names)
        if self.pre_activation:
            # Released quirk: the residual adds the normalised input, not the raw one.
            cls, x = owner.LayerNorm(cls), owner.LayerNorm(x)
        # One matmul projects query/key/value of every parallel pattern.
        fused = [att.fused_weights() for att in self.attentions]
        weight, bias = torch.cat([w for w, _ in fused]), torch.cat([b for _, b in fused])
        cls_qkv, x_qkv = F.linear(cls, weight, bias), F.linear(x, weight, bias)
        # chunk, not slicing: backward concatenates the patterns' gradients in one pass.
        k = len(self.attentions)
        outs = [
            att.attend(c, q, keep)
            for att, c, q in zip(self.attentions, cls_qkv.chunk(k, dim=-1), x_qkv.chunk(k, dim=-1), strict=True)
        ]
        att_cls = torch.cat([o[0] for o in outs], dim=-1)
        att_x = torch.cat([o[1] for o in outs], dim=-1)
        if rows is not None:
            att_x, x = att_x[rows], x[rows]
        new_cls = cls + self.drop(owner.dense(att_cls))
        new_x = x + self.drop(owner.dense(att_x))
        if self.pre_activation:
            return new_cls, new_x
        return owner.LayerNorm(new_cls), owner.LayerNorm(new_x)
