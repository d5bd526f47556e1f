"""Torch datasets over token shards: pre-training pairs, fine-tune train clips, multi-view test.

All three are IterableDatasets that stream row groups through a small per-worker cache and
split the epoch across DDP ranks and DataLoader workers without overlap (`assign_samples`).
Every random draw for a sample comes from a generator keyed on (seed, epoch, video position),
so the data of a step does not depend on num_workers and a resumed run sees the same clips.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from vimpac_core.data.sampling import (
    assign_samples,
    batches_per_rank,
    clip_pair_starts,
    epoch_order,
    random_clip_start,
    take_clip,
    test_clip_starts,
)
from vimpac_core.errors import ConfigError
from vimpac_core.shards.reader import RowGroupCache, ShardIndex


def resolve_views(index: ShardIndex, views: list[str] | None) -> list[list[str]]:
    """Per video, the views to draw from; ``None`` means every view the video has.

    Raises ConfigError naming ``views`` when a video has none of the requested ones.
    """
    out = []
    for entry in index.videos:
        have = sorted(entry.views) if views is None else [v for v in views if v in entry.views]
        if not have:
            raise ConfigError(
                f"views: video {entry.video_id!r} has none of {views}; its views are {sorted(entry.views)}"
            )
        out.append(have)
    return out


def select_videos(index: ShardIndex, views: list[str] | None, *, need_all: bool) -> tuple[ShardIndex, list[str]]:
    """Keep the videos that have the requested views: every one of them (``need_all``, a test set:
    each video gives the same views x clips) or at least one (a training set). ``views`` None
    means any view (training) or the views every video has (test). Returns the kept index (same
    files, videos in the same order) and the ids left out, so a caller can report them instead of
    crashing on a video one view lacks (the release read keys from its first view only).
    """
    if views is None and need_all:
        common = set.intersection(*(set(v.views) for v in index.videos)) if index.videos else set()
        if not common:
            raise ConfigError(f"test_views: no view is shared by every video of {index.url!r}; name the test views")
        views = sorted(common)
    keep, left_out = [], []
    for entry in index.videos:
        have = [v for v in views if v in entry.views] if views is not None else list(entry.views)
        ok = len(have) == len(views) if need_all and views is not None else bool(have)
        (keep if ok else left_out).append(entry if ok else entry.video_id)
    if not keep:
        raise ConfigError(
            f"views: no video of {index.url!r} has {'all' if need_all else 'any'} of {views}; its views are {index.views()}"
        )
    return ShardIndex(index.url, index.files, keep, index.storage_options), left_out


def check_grid(index: ShardIndex, views: list[list[str]], grid_size: int) -> None:
    """Every row used must have a grid_size x grid_size token grid (frame_size // downsample)."""
    for entry, names in zip(index.videos, views, strict=True):
        for name in names:
            ref = entry.views[name]
            if (ref.grid_h, ref.grid_w) != (grid_size, grid_size):
                raise ConfigError(
                    f"frame_size: the model expects a {grid_size}x{grid_size} token grid but video "
                    f"{entry.video_id!r} view {name!r} in {index.url!r} has {ref.grid_h}x{ref.grid_w}; "
                    "use shards tokenized at this frame size or change frame_size"
                )


class _ShardClips(IterableDataset):
    """Shared machinery: epoch order, rank/worker split, bounded row-group reads."""

    drop_last = True
    shuffle = True

    def __init__(
        self,
        index: ShardIndex,
        *,
        clip_len: int,
        frame_rate: int,
        grid_size: int,
        pad_id: int,
        batch_size: int,
        views: list[str] | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        cache_row_groups: int = 4,
    ):
        self.index = index
        self.clip_len, self.frame_rate, self.pad_id = clip_len, frame_rate, pad_id
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.cache_row_groups = cache_row_groups
        self.views = resolve_views(index, views)
        check_grid(index, self.views, grid_size)
        first = [entry.views[names[0]] for entry, names in zip(index.videos, self.views, strict=True)]
        self._groups = np.array([ref.file * 1_000_000 + ref.row_group for ref in first], dtype=np.int64)
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; skip the first ``start_batch`` batches of this rank (resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def num_batches(self) -> int:
        """Batches this rank yields in a full epoch."""
        if self.drop_last:
            return batches_per_rank(len(self.index), self.batch_size, self.world_size)
        mine = len(range(self.rank, len(self.index), self.world_size))
        return -(-mine // self.batch_size)

    def _positions(self) -> np.ndarray:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        order = epoch_order(self._groups, self.seed, self.epoch, shuffle=self.shuffle)
        return assign_samples(
            order,
            batch_size=self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            worker=worker,
            num_workers=num_workers,
            start_batch=self.start_batch,
            drop_last=self.drop_last,
        )

    def __iter__(self) -> Iterator:
        cache = RowGroupCache(self.index, self.cache_row_groups)
        for pos in self._positions():
            rng = np.random.default_rng([self.seed, self.epoch, int(pos)])
            yield self._sample(int(pos), cache, rng)

    def _sample(self, pos: int, cache: RowGroupCache, rng: np.random.Generator):
        raise NotImplementedError


class PretrainClips(_ShardClips):
    """Two clips of one video per sample: int64 [2, clip_len, h, w] (row 0 and 1 are the NCE pair).

    ``relevance_range`` (token frames) bounds the distance between the two starts.
    """

    def __init__(self, index: ShardIndex, *, relevance_range: int | None = None, **kwargs):
        super().__init__(index, **kwargs)
        self.relevance_range = relevance_range

    def _sample(self, pos: int, cache: RowGroupCache, rng: np.random.Generator) -> torch.Tensor:
        entry = self.index.videos[pos]
        names = self.views[pos]
        ref = entry.views[names[int(rng.integers(len(names)))]]
        grid = cache.grid(ref)
        s1, s2 = clip_pair_starts(ref.num_frames, self.clip_len, self.frame_rate, rng, self.relevance_range)
        pair = [take_clip(grid, s, self.clip_len, self.frame_rate, self.pad_id) for s in (s1, s2)]
        return torch.from_numpy(np.stack(pair))


class FinetuneClips(_ShardClips):
    """Fine-tune training: one random view, one random clip -> (int64 [clip_len, h, w], label)."""

    def _sample(self, pos: int, cache: RowGroupCache, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        entry = self.index.videos[pos]
        names = self.views[pos]
        ref = entry.views[names[int(rng.integers(len(names)))]]
        start = random_clip_start(ref.num_frames, self.clip_len, self.frame_rate, rng)
        clip = take_clip(cache.grid(ref), start, self.clip_len, self.frame_rate, self.pad_id)
        return torch.from_numpy(clip), -1 if entry.label is None else int(entry.label)


class MultiViewTestClips(_ShardClips):
    """Test: every test view x ``num_test_clips`` evenly spaced clips of each video, once.

    Yields (int64 [n_views * num_test_clips, clip_len, h, w], label, video position in the
    index); views in the order given, clips by start within each view (`test_clip_starts`: the
    release's formula, one clip at the start unless ``clip_position="center"``). No shuffle, no
    drop: across ranks and workers every video appears exactly once. Every video must have every
    view (filter the index with `select_videos` first).
    """

    drop_last = False
    shuffle = False

    def __init__(self, index: ShardIndex, *, num_test_clips: int = 10, clip_position: str = "start", **kwargs):
        super().__init__(index, **kwargs)
        self.num_test_clips, self.clip_position = num_test_clips, clip_position
        counts = {len(v) for v in self.views}
        if len(counts) > 1:
            raise ConfigError(f"views: test videos must all have the same test views, found counts {sorted(counts)}")

    def _sample(self, pos: int, cache: RowGroupCache, rng: np.random.Generator) -> tuple[torch.Tensor, int, int]:
        entry = self.index.videos[pos]
        clips = []
        for name in self.views[pos]:
            ref = entry.views[name]
            grid = cache.grid(ref)
            starts = test_clip_starts(ref.num_frames, self.clip_len, self.frame_rate, self.num_test_clips,
                                      self.clip_position)
            for start in starts:
                clips.append(take_clip(grid, start, self.clip_len, self.frame_rate, self.pad_id))
        return torch.from_numpy(np.stack(clips)), -1 if entry.label is None else int(entry.label), pos
