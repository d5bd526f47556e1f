"""Learning-rate schedules: linear warm-up, then linear decay / cosine decay / constant.

A schedule is a pure function of the optimizer step, so its whole state is three integers
(step, warmup_steps, total_steps) stored in the trainer state as JSON. Stage 2 of pre-training
keeps stage 1's warmup_steps and total_steps: one schedule over both stages.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Schedule:
    """lr(step) = base_lr * factor(step); ``kind`` in linear | cosine | constant."""

    kind: str
    warmup_steps: int
    total_steps: int

    @classmethod
    def from_warm_up(cls, kind: str, warm_up: float, total_steps: int) -> Schedule:
        """``warm_up`` as the original flag: below 1 the fraction of ``total_steps`` spent warming
        up, else the number of warm-up steps."""
        if kind not in ("linear", "cosine", "constant"):
            raise ValueError(f"lr_scheduler must be linear, cosine or constant, got {kind!r}")
        warmup_steps = int(warm_up * total_steps) if warm_up < 1 else int(warm_up)
        return cls(kind, warmup_steps, max(1, total_steps))

    def factor(self, step: int) -> float:
        """Multiplier of the base lr for the update made at ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int, base_lr: float) -> float:
        """Set every param group's lr for ``step``; returns it."""
        lr = base_lr * self.factor(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> Schedule:
        return cls(str(state["kind"]), int(state["warmup_steps"]), int(state["total_steps"]))
