"""Task models: pre-training (mask-then-predict + contrastive) and video classification."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import VimpacModel
from .config import VimpacConfig
from .heads import ContrastiveHead, MaskPredictionHead
from .losses import mask_then_predict_loss, nce_loss
from .pretrained import PreTrainedMixin, init_weights


@dataclass
class PreTrainingOutput:
    """Losses are None without labels; logits is None with labels (the head ran on masked rows only)."""

    loss: torch.Tensor | None
    mlm_loss: torch.Tensor | None
    nce_loss: torch.Tensor | None
    mask_accuracy: torch.Tensor | None
    cls_projection: torch.Tensor  # [2B, 256]
    logits: torch.Tensor | None  # [2B, T, H, W, V+5]


@dataclass
class ClassificationOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor  # [B, num_labels]


class VimpacForPreTraining(PreTrainedMixin, nn.Module):
    """Backbone + mask-then-predict head (``mlm_head``) + contrastive head (``cls_head``)."""

    def __init__(self, config: VimpacConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = VimpacModel(config)
        self.mlm_head = MaskPredictionHead(config, self.backbone.embedding)
        self.cls_head = ContrastiveHead(config)
        self.mlm_head.apply(init_weights)
        self.cls_head.apply(init_weights)
        nn.init.zeros_(self.mlm_head.bias)

    def forward(self, codes: torch.Tensor, mlm_labels: torch.Tensor | None = None) -> PreTrainingOutput:
        """codes [2B, T, H, W] (first clips, then second clips of the same videos).

        mlm_labels [2B, T, H, W] with -100 where nothing is predicted: losses are returned and
        the prediction head runs on the masked positions only (``logits`` is then None).
        """
        if mlm_labels is None:
            cls, hidden = self.backbone(codes)
            return PreTrainingOutput(None, None, None, None, self.cls_head(cls), self.mlm_head(hidden))
        chosen = mlm_labels != -100
        cls, hidden = self.backbone(codes, rows=chosen)  # hidden [M, D]: the masked positions only
        projection = self.cls_head(cls)
        mlm, accuracy = mask_then_predict_loss(self.mlm_head(hidden), mlm_labels[chosen])
        nce = nce_loss(projection, self.config.nce_temperature)
        loss = self.config.mlm_weight * mlm + self.config.nce_weight * nce
        return PreTrainingOutput(loss, mlm.detach(), nce.detach(), accuracy, projection, None)


class VimpacForClassification(PreTrainedMixin, nn.Module):
    """Backbone + Dropout(last_dropout) + Linear(D, num_labels) on CLS (``cls_fc``, zero-initialised)."""

    def __init__(self, config: VimpacConfig) -> None:
        super().__init__()
        if config.num_labels is None:
            raise ValueError("num_labels: a classification model needs num_labels set in its VimpacConfig")
        self.config = config
        self.backbone = VimpacModel(config)
        self.last_dropout = nn.Dropout(config.last_dropout)
        self.cls_fc = nn.Linear(config.hid_dim, config.num_labels)
        nn.init.zeros_(self.cls_fc.weight)
        nn.init.zeros_(self.cls_fc.bias)

    def forward(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> ClassificationOutput:
        """codes [B, T, H, W], labels [B] (class indices) -> loss (mean CE) and logits [B, num_labels]."""
        cls, _ = self.backbone(codes)
        logits = self.cls_fc(self.last_dropout(cls))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ClassificationOutput(loss, logits)
