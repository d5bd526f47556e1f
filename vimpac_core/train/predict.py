"""The one prediction routine: per-video results over a multi-view test set, gathered across ranks.

Each rank runs its share of `MultiViewTestClips` (rank-strided, no padding), reduces the per-clip
outputs of every video to one per-video result with ``reduce`` (the kNN monitor keeps the first
clip's CLS feature, evaluation averages the per-clip softmax), and the ranks' results are gathered
and put in index order. Every video of the index comes back exactly once: a video seen twice (as a
padding sampler would give) must agree with itself and is kept once; a missing one is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from vimpac_core.data import MultiViewTestClips
from vimpac_core.train.distributed import gather_objects


@dataclass
class Predictions:
    """Per video, in index order: position in the index, label (-1 none), reduced output."""

    positions: torch.Tensor  # [V] int64
    labels: torch.Tensor  # [V] int64
    outputs: torch.Tensor  # [V, ...] float32
    clip_loss: torch.Tensor | None = None  # [V] mean per-clip cross-entropy (evaluation)


def collect(parts: list[tuple[torch.Tensor, ...]], expected: int) -> tuple[torch.Tensor, ...]:
    """Every rank's (positions, labels, outputs, ...) -> one entry per position 0..expected-1, in order."""
    joined = [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))]
    positions = joined[0]
    order = torch.argsort(positions, stable=True)
    joined = [t[order] for t in joined]
    positions = joined[0]
    first = torch.ones_like(positions, dtype=torch.bool)
    first[1:] = positions[1:] != positions[:-1]
    for t in joined[1:]:  # duplicates must agree with the copy they repeat
        dup = ~first
        if dup.any():
            keep_idx = torch.cumsum(first.long(), 0) - 1
            originals = t[first][keep_idx[dup]]
            if not torch.allclose(t[dup].float(), originals.float(), atol=1e-5):
                raise RuntimeError("predictions: a video predicted twice gave two different results")
    joined = [t[first] for t in joined]
    if len(joined[0]) != expected or (expected and int(joined[0][-1]) != expected - 1):
        missing = sorted(set(range(expected)) - set(joined[0].tolist()))[:5]
        raise RuntimeError(f"predictions: {expected - len(joined[0])} of {expected} videos missing, e.g. {missing}")
    return tuple(joined)


@torch.no_grad()
def predict(
    forward: Callable[[torch.Tensor], torch.Tensor],
    dataset: MultiViewTestClips,
    *,
    device: torch.device,
    videos_per_batch: int,
    reduce: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    num_workers: int = 0,
) -> Predictions:
    """Run ``forward`` (codes [N, T, H, W] -> [N, D]) over every clip of this rank's videos;
    ``reduce(outputs [B, clips, D], labels [B])`` -> (per-video result [B, ...], per-video loss [B]).
    Returns every rank's videos, in index order, on every rank (collective)."""
    positions, labels, outputs, losses = [], [], [], []
    loader = DataLoader(dataset, batch_size=videos_per_batch, num_workers=num_workers)
    for clips, label, pos in loader:
        b, n = clips.shape[:2]
        out = forward(clips.flatten(0, 1).to(device, non_blocking=True)).float()
        result, loss = reduce(out.reshape(b, n, *out.shape[1:]), label.to(device))
        positions.append(pos.long())
        labels.append(label.long())
        outputs.append(result.cpu())
        losses.append(loss.float().cpu())
    empty = torch.zeros(0, dtype=torch.long)
    mine = (
        torch.cat(positions) if positions else empty,
        torch.cat(labels) if labels else empty,
        torch.cat(outputs) if outputs else torch.zeros(0),
        torch.cat(losses) if losses else torch.zeros(0),
    )
    parts = [p for p in gather_objects(mine) if len(p[0])]
    if not parts:
        raise RuntimeError("predictions: no rank saw a video")
    pos, lab, out, loss = collect(parts, len(dataset.index))
    return Predictions(pos, lab, out, loss)


def mean_softmax(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation's reduce: softmax per clip averaged over views x clips (the release's aggregation),
    and the mean per-clip cross-entropy (0 for unlabelled videos)."""
    probs = logits.softmax(-1).mean(1)
    b, n, c = logits.shape
    target = labels.clamp(min=0).repeat_interleave(n)
    ce = torch.nn.functional.cross_entropy(logits.reshape(b * n, c), target, reduction="none").reshape(b, n).mean(1)
    return probs, torch.where(labels >= 0, ce, torch.zeros_like(ce))


def first_clip(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """kNN's reduce: the first clip's feature of each video."""
    return features[:, 0], torch.zeros(len(features), device=features.device)
