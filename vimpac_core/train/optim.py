"""AdamW with a no-decay group, as in the paper (no weight decay on biases and LayerNorm weights).

No decay: every parameter with fewer than 2 dimensions (biases, LayerNorm and BatchNorm weights,
``cls_param``) and the positional embedding tables (``*pos_embedding*``: additive position codes,
like biases). Decayed: every matrix, including the token embedding, whose weight is the tied
mask-then-predict decoder. Groups carry parameter names so the optimizer state can be saved by
name (checkpoint.py) and resized for stage 2.
"""

from __future__ import annotations

import torch
from torch import nn


def no_decay(name: str, param: torch.Tensor) -> bool:
    """True when ``name`` gets no weight decay (see module docstring)."""
    return param.ndim < 2 or "pos_embedding" in name


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups, ``decay`` and ``no_decay``, each with ``names`` aligned to ``params``."""
    groups = {"decay": ([], []), "no_decay": ([], [])}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        names, params = groups["no_decay" if no_decay(name, param) else "decay"]
        names.append(name)
        params.append(param)
    return [
        {"params": groups["decay"][1], "names": groups["decay"][0], "weight_decay": weight_decay, "group": "decay"},
        {"params": groups["no_decay"][1], "names": groups["no_decay"][0], "weight_decay": 0.0, "group": "no_decay"},
    ]


def build_optimizer(
    model: nn.Module, *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW(lr, (beta1, beta2), eps) over param_groups(model)."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(beta1, beta2), eps=eps)
