"""AdamW with a no-decay group, as in the paper: no weight decay on biases and LayerNorm weights.

Everything else is decayed, as in the release: matrices (the token embedding, which is also the
tied mask-then-predict decoder, included), the positional tables, ``cls_param`` and the contrastive
head's BatchNorm weights. LayerNorms are found by module type, so the prediction head's LayerNorm
(``mlm_head.transform.2``) is exempt too; the release matched names against "LayerNorm.weight",
".ln.weight", "ln_pre.weight", ..., which missed that one. Groups carry parameter names so the
optimizer state can be saved by name (checkpoint.py) and resized for stage 2.
"""

from __future__ import annotations

import torch
from torch import nn


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get no weight decay: every bias and LayerNorm weight."""
    names = {n for n, _ in model.named_parameters() if n == "bias" or n.endswith(".bias")}
    for prefix, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) and module.weight is not None:
            names.add(f"{prefix}.weight" if prefix else "weight")
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups, ``decay`` and ``no_decay``, each with ``names`` aligned to ``params``."""
    exempt = no_decay_names(model)
    groups = {"decay": ([], []), "no_decay": ([], [])}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        names, params = groups["no_decay" if name in exempt else "decay"]
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
