"""The VIMPAC model: config, backbone, heads, block masking, losses and the checkpoint format."""

from .backbone import VimpacModel
from .config import VimpacConfig
from .convert import load_original_checkpoint
from .losses import mask_then_predict_loss, nce_loss
from .masking import block_mask
from .modeling import (
    ClassificationOutput,
    PreTrainingOutput,
    VimpacForClassification,
    VimpacForPreTraining,
)
from .pretrained import (
    interpolate_positional_embedding,
    load_pretrained_weights,
    read_pretrained,
    resize_optimizer_state,
    resize_state_dict,
)

__all__ = [
    "ClassificationOutput",
    "PreTrainingOutput",
    "VimpacConfig",
    "VimpacForClassification",
    "VimpacForPreTraining",
    "VimpacModel",
    "block_mask",
    "interpolate_positional_embedding",
    "load_original_checkpoint",
    "load_pretrained_weights",
    "mask_then_predict_loss",
    "nce_loss",
    "read_pretrained",
    "resize_optimizer_state",
    "resize_state_dict",
]
