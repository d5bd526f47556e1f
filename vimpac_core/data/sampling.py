"""Clip sampling over a video's token frames, and the epoch order split over ranks and workers.

Units: frame indices count token frames (rows of the [T, h, w] grid a shard stores), so a clip
of ``clip_len`` frames taken every ``frame_rate`` frames spans ``(clip_len - 1) * frame_rate + 1``
token frames. The same functions serve pre-training, fine-tune training and multi-clip test.
"""

from __future__ import annotations

import numpy as np


def clip_span(clip_len: int, frame_rate: int) -> int:
    """Token frames covered by one clip, first to last frame included."""
    return (clip_len - 1) * frame_rate + 1


def max_clip_start(num_frames: int, clip_len: int, frame_rate: int) -> int:
    """Largest start index whose clip fits the video; 0 when the video is shorter than a clip."""
    return max(0, num_frames - clip_span(clip_len, frame_rate))


def random_clip_start(num_frames: int, clip_len: int, frame_rate: int, rng: np.random.Generator) -> int:
    """Training start: uniform over every start whose clip fits (0 for short videos)."""
    return int(rng.integers(0, max_clip_start(num_frames, clip_len, frame_rate) + 1))


def clip_pair_starts(
    num_frames: int, clip_len: int, frame_rate: int, rng: np.random.Generator, relevance_range: int | None = None
) -> tuple[int, int]:
    """Starts of the two clips of one video for the contrastive loss.

    Both uniform and independent; with ``relevance_range`` r (token frames) the second start is
    uniform within r of the first (clamped to the valid range), as the original's
    ``nce_relevance_range`` bounds the distance of positive pairs.
    """
    first = random_clip_start(num_frames, clip_len, frame_rate, rng)
    top = max_clip_start(num_frames, clip_len, frame_rate)
    if relevance_range is None:
        return first, int(rng.integers(0, top + 1))
    low, high = max(0, first - relevance_range), min(top, first + relevance_range)
    return first, int(rng.integers(low, high + 1))


def test_clip_starts(
    num_frames: int, clip_len: int, frame_rate: int, num_clips: int, position: str = "start"
) -> list[int]:
    """Evenly spaced starts as the release takes them: start_k = int(delta * k / max(n - 1, 1)),
    delta = the largest valid start. So one clip takes the video's START and two clips its start
    and end (FINETUNE.md 2). ``position="center"`` (an extension) puts a single clip in the middle
    (delta // 2); it changes nothing for two or more clips.
    """
    if num_clips < 1:
        raise ValueError(f"num_test_clips must be >= 1, got {num_clips}")
    if position not in ("start", "center"):
        raise ValueError(f"test_clip_position must be 'start' or 'center', got {position!r}")
    delta = max_clip_start(num_frames, clip_len, frame_rate)
    if num_clips == 1 and position == "center":
        return [delta // 2]
    return [int(delta * k / max(num_clips - 1, 1)) for k in range(num_clips)]


def take_clip(grid: np.ndarray, start: int, clip_len: int, frame_rate: int, pad_id: int) -> np.ndarray:
    """Frames start, start + frame_rate, ... of a [T, h, w] grid -> int64 [clip_len, h, w].

    Frames past the end of the video are PAD (``pad_id``), so short videos still give full clips.
    """
    idx = start + frame_rate * np.arange(clip_len)
    clip = np.full((clip_len, *grid.shape[1:]), pad_id, dtype=np.int64)
    valid = idx < grid.shape[0]
    clip[valid] = grid[idx[valid]]
    return clip


def epoch_order(groups: np.ndarray, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """A permutation of range(len(groups)) for one epoch, deterministic in (seed, epoch).

    ``groups[i]`` is the storage unit (Parquet row group) of video i. Units are shuffled, then
    videos within each unit, so consecutive samples come from one row group: a reader that keeps
    a few row groups in memory reads each one once per epoch (bounded memory, streamed I/O).
    """
    n = len(groups)
    if not shuffle:
        return np.arange(n)
    rng = np.random.default_rng([seed, epoch])
    units = np.unique(groups)
    rng.shuffle(units)
    by_unit = {u: np.flatnonzero(groups == u) for u in units}
    return np.concatenate([rng.permutation(by_unit[u]) for u in units]) if n else np.arange(0)


def assign_samples(
    order: np.ndarray,
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    num_workers: int = 1,
    start_batch: int = 0,
    drop_last: bool = True,
) -> np.ndarray:
    """The positions of ``order`` one (rank, worker) yields, in order.

    Each rank gets a contiguous, equally long slice (with ``drop_last`` the tail that does not
    fill a batch on every rank is dropped, so DDP ranks run the same number of steps). A rank's
    batches go round-robin to DataLoader workers: batch b to worker (b - start_batch) % num_workers, which is the
    order the DataLoader hands them back, so the batch sequence does not depend on num_workers.
    Batches before ``start_batch`` are skipped (resume mid-epoch). Without drop_last the
    split is rank-strided and every sample is yielded exactly once across ranks (evaluation).
    """
    if drop_last:
        per_rank = len(order) // world_size // batch_size * batch_size
        mine = order[rank * per_rank : (rank + 1) * per_rank]
    else:
        mine = order[rank::world_size]
    batches = [mine[b : b + batch_size] for b in range(0, len(mine), batch_size)]
    picked = [batch for b, batch in enumerate(batches) if b >= start_batch and (b - start_batch) % num_workers == worker]
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def batches_per_rank(num_samples: int, batch_size: int, world_size: int) -> int:
    """Full batches every rank gets per epoch under assign_samples(drop_last=True)."""
    return num_samples // world_size // batch_size
