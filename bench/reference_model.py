"""An independent, deliberately plain implementation of the released VIMPAC module tree.

Written from MODEL.md (no import from vimpac_core): explicit softmax(QK^T / sqrt(d/n)) V, loops
over the lines of tokens with CLS prepended, CLS = mean over lines. Module names and the layout flag
follow the original code (airsplay/vimpac ``vimpac/modeling.py``: ``ModelWithHead`` with
``backbone`` / ``mlm_head`` / ``cls_head``; ``MultiPatternAttention`` holds ``output.dense`` /
``output.LayerNorm``, or ``dense`` / ``LayerNorm`` itself when pre-activation;
``vimpac/positional_embedding.py``: the ``default`` table is ``positional_embedding``), so its
state_dict is what a released ``classifier.pt`` holds. Used by the model tests (equivalence and the
released-checkpoint fixture) and as the baseline of bench/bench_model.py.

``flags`` gives the original flags (argparse dests of ``vimpac/param.py``), e.g. the layout as
``model='efflayoutT,H|W'``.
"""

from __future__ import annotations

import math
from argparse import Namespace

import torch
from torch import nn

EPS = 1e-12
AXIS = {"T": 1, "H": 2, "W": 3}
LAYOUT_PREFIX = "efflayout"  # the original --model flag is 'efflayout' + layout


def layout_of(f: Namespace) -> str:
    """The layout in the original flags, as pretrain.py reads it: ``args.model[len("efflayout"):]``."""
    return f.model[len(LAYOUT_PREFIX):]


class Attention(nn.Module):
    def __init__(self, dim: int, width: int) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(dim, width), nn.Linear(dim, width), nn.Linear(dim, width)


class Pattern(nn.Module):
    def __init__(self, dim: int, width: int, heads: int, axis: str, loop_lines: bool) -> None:
        super().__init__()
        self.attention = Attention(dim, width)
        self.heads, self.axis, self.loop_lines = heads, axis, loop_lines

    def attend(self, seq: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """seq [N, S, D] (S = 1 + L), keep [N, S] -> [N, S, width], explicit softmax attention."""
        n, s, _ = seq.shape
        q, k, v = (f(seq).reshape(n, s, self.heads, -1).transpose(1, 2) for f in
                   (self.attention.query, self.attention.key, self.attention.value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        return (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, s, -1)

    def forward(self, cls: torch.Tensor, x: torch.Tensor, keep: torch.Tensor):
        a = AXIS[self.axis]
        xa, ka = x.movedim(a, 3), keep.movedim(a, 3)  # [B, o1, o2, L, D]
        b, o1, o2, length, _ = xa.shape
        cls_keep = keep.new_ones(b, 1)
        if self.loop_lines:
            cls_outs, tokens = [], torch.zeros(b, o1, o2, length, self.attention.query.out_features)
            for i in range(o1):
                for j in range(o2):
                    seq = torch.cat([cls[:, None], xa[:, i, j]], dim=1)
                    out = self.attend(seq, torch.cat([cls_keep, ka[:, i, j]], dim=1))
                    cls_outs.append(out[:, 0])
                    tokens[:, i, j] = out[:, 1:]
            new_cls = torch.stack(cls_outs, dim=1).mean(dim=1)
        else:
            seq = torch.cat([cls[:, None, None, None].expand(b, o1, o2, 1, -1), xa], dim=3)
            kk = torch.cat([cls_keep[:, None, None].expand(b, o1, o2, 1), ka], dim=3)
            out = self.attend(seq.reshape(b * o1 * o2, 1 + length, -1), kk.reshape(b * o1 * o2, -1))
            out = out.reshape(b, o1, o2, 1 + length, -1)
            new_cls, tokens = out[:, :, :, 0].mean(dim=(1, 2)), out[:, :, :, 1:]
        return new_cls, tokens.movedim(3, a)


class Output(nn.Module):
    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(in_dim, dim), nn.LayerNorm(dim, eps=EPS)


class AttBlock(nn.Module):
    def __init__(self, f: Namespace, axes: str, loop_lines: bool) -> None:
        super().__init__()
        d = f.hid_dim
        d_att = d // 2 if f.halve_att else d
        heads = max(1, d // 64)
        k = len(axes)
        self.attentions = nn.ModuleList(Pattern(d, d_att // k, heads // k, a, loop_lines) for a in axes)
        self.pre = f.pre_activation
        if self.pre:
            self.dense, self.LayerNorm = nn.Linear(d, d), nn.LayerNorm(d, eps=EPS)
        else:
            self.output = Output(d_att, d)

    def forward(self, cls, x, keep):
        dense, norm = (self.dense, self.LayerNorm) if self.pre else (self.output.dense, self.output.LayerNorm)
        if self.pre:
            cls, x = norm(cls), norm(x)
        outs = [p(cls, x, keep) for p in self.attentions]
        c = dense(torch.cat([o[0] for o in outs], -1)) + cls
        t = dense(torch.cat([o[1] for o in outs], -1)) + x
        return (c, t) if self.pre else (norm(c), norm(t))


class Mlp(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.c_proj(torch.nn.functional.gelu(self.c_fc(x)))


class ResBlock(nn.Module):
    def __init__(self, f: Namespace, loop_lines: bool) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(AttBlock(f, axes.split("|"), loop_lines) for axes in layout_of(f).split(","))
        self.mlp = Mlp(f.hid_dim, f.hid_dim * (2 if f.halve_mlp else 4))
        self.ln = nn.LayerNorm(f.hid_dim, eps=EPS)
        self.pre = f.pre_activation

    def forward(self, cls, x, keep):
        for blk in self.attention_blocks:
            cls, x = blk(cls, x, keep)
        if self.pre:
            return cls + self.mlp(self.ln(cls)), x + self.mlp(self.ln(x))
        return self.ln(cls + self.mlp(cls)), self.ln(x + self.mlp(x))


class Transformer(nn.Module):
    def __init__(self, f: Namespace, loop_lines: bool) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResBlock(f, loop_lines) for _ in range(f.layers))


class PosEmb(nn.Module):
    def __init__(self, f: Namespace) -> None:
        super().__init__()
        t, g, d = f.clip_len, f.frame_size // 8, f.hid_dim
        self.kind = f.pos_emb
        p = lambda *s, std=0.02: nn.Parameter(torch.randn(*s) * std)  # noqa: E731
        if self.kind == "default":
            self.positional_embedding = p(1 + t * g * g, d)
        elif self.kind == "temporal_separation":
            std = 0.02 / math.sqrt(2)
            self.cls_pos_embedding, self.temporal_pos_embedding = p(1, d), p(t, d, std=std)
            self.spatial_pos_embedding = p(g * g, d, std=std)
        else:
            std = 0.02 / math.sqrt(3)
            self.cls_pos_embedding, self.temporal_pos_embedding = p(1, d), p(t, d, std=std)
            self.height_pos_embedding, self.width_pos_embedding = p(g, d, std=std), p(g, d, std=std)

    def position(self, t: int, h: int, w: int, g: int) -> torch.Tensor:
        if self.kind == "default":
            return self.positional_embedding[1 + (t * g + h) * g + w]
        if self.kind == "temporal_separation":
            return self.temporal_pos_embedding[t] + self.spatial_pos_embedding[h * g + w]
        return self.temporal_pos_embedding[t] + self.height_pos_embedding[h] + self.width_pos_embedding[w]

    def cls(self) -> torch.Tensor:
        return self.positional_embedding[0] if self.kind == "default" else self.cls_pos_embedding[0]


class Backbone(nn.Module):
    def __init__(self, f: Namespace, loop_lines: bool = True) -> None:
        super().__init__()
        d = f.hid_dim
        self.cls_param = nn.Parameter(torch.randn(d) * 0.02)
        self.embedding = nn.Embedding(f.vocab_size + 5, d)
        self.positional_embedding = PosEmb(f)
        if f.pre_activation:
            self.ln_post = nn.LayerNorm(d, eps=EPS)
        else:
            self.ln_pre = nn.LayerNorm(d, eps=EPS)
        self.transformer = Transformer(f, loop_lines)
        self.f = f

    def forward(self, codes: torch.Tensor):
        b, t, h, w = codes.shape
        pos = torch.stack([torch.stack([torch.stack([self.positional_embedding.position(i, j, k, h)
                                                     for k in range(w)]) for j in range(h)]) for i in range(t)])
        x = self.embedding(codes) + pos
        cls = (self.cls_param + self.positional_embedding.cls()).expand(b, -1)
        if not self.f.pre_activation:
            cls, x = self.ln_pre(cls), self.ln_pre(x)
        keep = codes != self.f.vocab_size + 1
        for block in self.transformer.resblocks:
            cls, x = block(cls, x, keep)
        if self.f.pre_activation:
            cls, x = self.ln_post(cls), self.ln_post(x)
        return cls, x


class MlmHead(nn.Module):
    def __init__(self, d: int, embedding: nn.Embedding) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d, eps=EPS))
        self.decoder = nn.Linear(d, embedding.num_embeddings)
        self.bias = nn.Parameter(torch.randn(embedding.num_embeddings) * 0.02)
        self.decoder.weight, self.decoder.bias = embedding.weight, self.bias

    def forward(self, x):
        return self.decoder(self.transform(x))


class ProjMlp(nn.Module):
    def __init__(self, f: Namespace) -> None:
        super().__init__()
        self.n, self.bn_after = f.nce_proj_layers, f.nce_bn_after_proj
        width = f.hid_dim
        for i in range(self.n - 1):
            setattr(self, f"linear_{i}", nn.Linear(width, f.nce_proj_hid_dim))
            setattr(self, f"bn_{i}", nn.BatchNorm1d(f.nce_proj_hid_dim))
            width = f.nce_proj_hid_dim
        setattr(self, f"linear_{self.n - 1}", nn.Linear(width, 256, bias=False))
        if self.bn_after:
            setattr(self, f"bn_{self.n - 1}", nn.BatchNorm1d(256))

    def forward(self, x):
        for i in range(self.n - 1):
            x = torch.relu(getattr(self, f"bn_{i}")(getattr(self, f"linear_{i}")(x)))
        x = getattr(self, f"linear_{self.n - 1}")(x)
        return getattr(self, f"bn_{self.n - 1}")(x) if self.bn_after else x


class ClsHead(nn.Module):
    def __init__(self, f: Namespace) -> None:
        super().__init__()
        self.mlp = ProjMlp(f)


class ModelWithHead(nn.Module):
    """Released pre-training model: forward -> (cls projection [N, 256], logits [N, T, H, W, V+5])."""

    def __init__(self, f: Namespace, loop_lines: bool = True) -> None:
        super().__init__()
        self.backbone = Backbone(f, loop_lines)
        self.mlm_head = MlmHead(f.hid_dim, self.backbone.embedding)
        self.cls_head = ClsHead(f)

    def forward(self, codes):
        cls, x = self.backbone(codes)
        return self.cls_head.mlp(cls), self.mlm_head(x)


class ModelWithClassifier(nn.Module):
    """Released fine-tuned model: forward -> logits [N, num_classes]."""

    def __init__(self, f: Namespace, num_classes: int) -> None:
        super().__init__()
        self.backbone = Backbone(f)
        self.cls_fc = nn.Linear(f.hid_dim, num_classes)

    def forward(self, codes):
        return self.cls_fc(self.backbone(codes)[0])


class Flags(Namespace):
    """The original run's flags; ``vars(flags)`` holds the original names only.

    ``layout`` reads the layout out of ``model`` as pretrain.py does (``args.model[len("efflayout"):]``).
    Pickle or print ``Namespace(**vars(flags))``: that is what the original writes to args.pickle.
    """

    @property
    def layout(self) -> str:
        return layout_of(self)


def flags(layout: str = "T,H|W", **overrides) -> Flags:
    """Original flag names with a small model's values, overridable; ``layout`` sets ``model``."""
    base = dict(model=LAYOUT_PREFIX + layout, layers=1, hid_dim=128, pos_emb="hw_separation",
                pre_activation=False, halve_att=False, halve_mlp=False, frame_size=32, clip_len=3,
                vocab_size=40, dropout=0.1, last_dropout=0.0, nce_proj_layers=2, nce_proj_hid_dim=64,
                nce_bn_after_proj=False, mlm_weight=1.0, nce_weight=1.0, mask_blocks=5, lr=1e-3,
                grad_checkpoint=False, output="snap/pretrain/small", load=None, epoch=9)
    base.update(overrides)
    return Flags(**base)
