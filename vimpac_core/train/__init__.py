"""Training: config, AdamW groups, LR schedules, checkpoints, DDP helpers, the loop, launcher."""

from vimpac_core.train.config import PretrainConfig, parse_stages
from vimpac_core.train.schedule import Schedule

__all__ = ["PretrainConfig", "Schedule", "parse_stages"]
