"""Training: configs, the shared trainer with its objectives (pre-training, fine-tuning),
evaluation, AdamW groups, LR schedules, checkpoints, DDP helpers, the torchrun launcher."""

from vimpac_core.train.config import PretrainConfig, TrainConfigBase, parse_stages
from vimpac_core.train.finetune_config import EvaluateConfig, FinetuneConfig
from vimpac_core.train.schedule import Schedule

__all__ = ["EvaluateConfig", "FinetuneConfig", "PretrainConfig", "Schedule", "TrainConfigBase", "parse_stages"]
