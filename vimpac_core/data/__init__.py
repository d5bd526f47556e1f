"""Torch datasets over token shards: pre-training pairs, fine-tune train clips, multi-view test."""

from vimpac_core.data.datasets import FinetuneClips, MultiViewTestClips, PretrainClips, select_videos
from vimpac_core.data.sampling import (
    assign_samples,
    clip_pair_starts,
    epoch_order,
    random_clip_start,
    take_clip,
    test_clip_starts,
)

__all__ = [
    "FinetuneClips",
    "MultiViewTestClips",
    "PretrainClips",
    "assign_samples",
    "clip_pair_starts",
    "epoch_order",
    "random_clip_start",
    "select_videos",
    "take_clip",
    "test_clip_starts",
]
