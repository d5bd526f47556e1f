"""Optimizer state as named tensors: ``"<parameter name>/<slot>"`` (``exp_avg``, ``exp_avg_sq``,
``step``), so it saves to safetensors and loads back by name into another optimizer (the model's
pre-training and fine-tuning checkpoints, the tokenizer's training checkpoints).

The optimizer's param groups carry the parameters' ``names`` (train/optim.py's build_optimizer,
the tokenizer trainer's Adam).
"""

from __future__ import annotations

import torch

from vimpac_core.errors import CheckpointError


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Optimizer state keyed "<param name>/<slot>" (groups must carry ``names``, see optim.py)."""
    out = {}
    for group in optimizer.param_groups:
        for name, param in zip(group["names"], group["params"], strict=True):
            for slot, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value):
                    out[f"{name}/{slot}"] = value.detach().cpu().contiguous().reshape(value.shape)
    return out


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Put saved slots back by parameter name; returns the names that got no saved state.

    Shapes must match (resize moments first for another grid, see resize_state_dict)."""
    fresh = []
    for group in optimizer.param_groups:
        for name, param in zip(group["names"], group["params"], strict=True):
            slots = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.rsplit("/", 1)[0] == name}
            if not slots:
                fresh.append(name)
                continue
            for slot, value in slots.items():
                if slot != "step" and value.shape != param.shape:
                    raise CheckpointError(
                        f"optimizer state {name}/{slot}: shape {tuple(value.shape)} != parameter shape "
                        f"{tuple(param.shape)}; use different_shape to resize positional tables"
                    )
            optimizer.state[param] = {
                slot: value.to(param.device) if slot != "step" else value.clone() for slot, value in slots.items()
            }
    return fresh
