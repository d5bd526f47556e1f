"""Clip sampling (MODEL.md: stride frame_rate, uniform start, PAD) and the rank/worker split."""

from __future__ import annotations

import numpy as np
import pytest

from vimpac_core.data.sampling import (
    assign_samples,
    clip_pair_starts,
    epoch_order,
    max_clip_start,
    random_clip_start,
    take_clip,
)
from vimpac_core.data.sampling import (
    test_clip_starts as evenly_spaced_starts,
)


def test_take_clip_strides_and_pads():
    grid = np.arange(7)[:, None, None] * np.ones((1, 2, 2), dtype=np.int64)
    clip = take_clip(grid, 2, 4, 2, pad_id=99)
    assert clip[:, 0, 0].tolist() == [2, 4, 6, 99]
    assert take_clip(grid, 0, 3, 3, pad_id=99)[:, 1, 1].tolist() == [0, 3, 6]


def test_random_start_is_uniform_over_valid_starts():
    rng = np.random.default_rng(0)
    starts = [random_clip_start(20, 5, 2, rng) for _ in range(4000)]
    assert max_clip_start(20, 5, 2) == 11
    assert set(starts) == set(range(12))
    counts = np.bincount(starts)
    assert counts.min() > 250 and counts.max() < 420
    assert random_clip_start(3, 5, 2, rng) == 0  # short video: start 0, padded later


def test_relevance_range_bounds_pair_distance():
    rng = np.random.default_rng(1)
    pairs = [clip_pair_starts(100, 4, 1, rng, relevance_range=3) for _ in range(500)]
    assert max(abs(a - b) for a, b in pairs) == 3
    free = [clip_pair_starts(100, 4, 1, rng) for _ in range(500)]
    assert max(abs(a - b) for a, b in free) > 50


def test_test_starts_are_evenly_spaced():
    assert evenly_spaced_starts(24, 4, 1, 5) == [0, 5, 10, 15, 20]
    assert evenly_spaced_starts(24, 4, 1, 1) == [0]  # the release: one clip takes the start
    assert evenly_spaced_starts(24, 4, 1, 1, position="center") == [10]
    assert evenly_spaced_starts(24, 4, 1, 2) == [0, 20]
    assert evenly_spaced_starts(2, 4, 1, 3) == [0, 0, 0]
    with pytest.raises(ValueError, match="num_test_clips"):
        evenly_spaced_starts(10, 2, 1, 0)


def test_epoch_order_keeps_row_groups_together_and_changes_per_epoch():
    groups = np.repeat(np.arange(5), 4)
    order = epoch_order(groups, seed=3, epoch=0)
    assert sorted(order.tolist()) == list(range(20))
    runs = groups[order].reshape(5, 4)
    assert (runs == runs[:, :1]).all()  # each row group read in one go
    assert not np.array_equal(order, epoch_order(groups, seed=3, epoch=1))
    np.testing.assert_array_equal(order, epoch_order(groups, seed=3, epoch=0))


@pytest.mark.parametrize("world,workers,bs", [(1, 1, 3), (2, 3, 2), (3, 2, 4)])
def test_assignment_is_disjoint_and_covers_all_full_batches(world, workers, bs):
    order = np.random.default_rng(0).permutation(50)
    parts = [
        assign_samples(order, batch_size=bs, rank=r, world_size=world, worker=w, num_workers=workers)
        for r in range(world)
        for w in range(workers)
    ]
    seen = np.concatenate(parts)
    assert len(seen) == len(set(seen.tolist()))
    assert len(seen) == 50 // world // bs * bs * world
    lengths = {sum(len(parts[r * workers + w]) for w in range(workers)) for r in range(world)}
    assert len(lengths) == 1  # every rank runs the same number of steps
    evaluation = np.concatenate(
        [assign_samples(order, batch_size=bs, rank=r, world_size=world, drop_last=False) for r in range(world)]
    )
    assert sorted(evaluation.tolist()) == list(range(50))


def test_start_batch_skips_exactly_the_consumed_batches():
    order = np.arange(40)
    full = assign_samples(order, batch_size=4, rank=1, world_size=2)
    rest = assign_samples(order, batch_size=4, rank=1, world_size=2, start_batch=3)
    np.testing.assert_array_equal(rest, full[12:])
