"""The kNN monitor's leave-one-out top-1."""

from __future__ import annotations

import torch

from vimpac_core.train.knn import knn_top1


def test_separable_clusters_score_one_and_shuffled_labels_do_not():
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(4, 16) * 10
    labels = torch.arange(4).repeat_interleave(10)
    feats = centres[labels] + 0.1 * torch.randn(40, 16, generator=gen)
    assert knn_top1(feats, labels, k=5) == 1.0
    shuffled = labels[torch.randperm(40, generator=gen)]
    assert knn_top1(feats, shuffled, k=5) < 0.6
