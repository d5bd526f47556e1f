"""What a kind of training plugs into the trainer (`Objective`), and the live objects of a run (`Run`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from vimpac_core.train.checkpoint import TrainerState
from vimpac_core.train.distributed import DistEnv
from vimpac_core.train.schedule import Schedule


class Objective(Protocol):
    """What one kind of training adds to the trainer."""

    name: str  # log prefix, e.g. "pretrain"
    metric_names: tuple[str, ...]  # what `loss` returns, in order; the first is the loss
    clips_per_sample: int

    def build_dataset(self, config: Any, env: DistEnv) -> Any:
        """This rank's training data (a _ShardClips: set_epoch, num_batches, index)."""

    def build_model(self, config: Any) -> torch.nn.Module:
        """A freshly initialised model (the global RNG is seeded just before)."""

    def load_start(self, model: torch.nn.Module, folder: Path, config: Any, resuming: bool) -> Any:
        """Put the start point's weights into ``model``; returns the checkpoint's VimpacConfig."""

    def carries_optimizer(self, config: Any) -> bool:
        """Whether a ``load`` start point also brings its optimizer state, schedule and counters."""

    def loss(self, run: Run, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward one micro-batch (already under autocast) -> (loss, detached metric vector)."""

    def after_epoch(self, run: Run) -> dict:
        """Work at an epoch boundary before its checkpoint (monitor, evaluation); metrics to keep."""


@dataclass
class Run:
    """The live objects of one training run (built by setup_run)."""

    config: Any  # a TrainConfigBase subclass
    env: DistEnv
    objective: Objective
    model: torch.nn.Module  # unwrapped (for saving)
    ddp: torch.nn.Module  # DDP-wrapped when distributed, else the model itself
    optimizer: torch.optim.AdamW
    schedule: Schedule
    dataset: Any
    state: TrainerState
    end_epoch: int
    stage_start_epoch: int
    start_step: int = 0  # the step this run started at (a resumed checkpoint's, a next stage's)
    scaler: torch.amp.GradScaler | None = None
    writer: Any = None  # torch.utils.tensorboard.SummaryWriter on rank 0
    history: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # what after_epoch reports (kNN top-1, evaluation)
