"""Datasets over real shard files with real DataLoader workers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from vimpac_core.data import FinetuneClips, MultiViewTestClips, PretrainClips
from vimpac_core.errors import ConfigError
from vimpac_core.shards.reader import ShardIndex
from vimpac_core.shards.synthetic import token_rows, write_token_shards

PAD = 8193


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    write_token_shards(str(root), token_rows(30, frames=[3, 9, 12], structured=True, vocab_size=8192), rows_per_shard=8)
    return ShardIndex.build(str(root))


def _kwargs(**over):
    kw = dict(clip_len=3, frame_rate=2, grid_size=4, pad_id=PAD, batch_size=2, seed=7)
    kw.update(over)
    return kw


def _video_of(clip: torch.Tensor) -> int:
    return int(clip[0, 0, 0]) // 16


def test_pretrain_pairs_are_two_clips_of_one_video(index):
    batches = list(DataLoader(PretrainClips(index, **_kwargs()), batch_size=2))
    assert len(batches) == 15
    for batch in batches:
        assert batch.shape == (2, 2, 3, 4, 4) and batch.dtype == torch.int64
        for pair in batch:
            assert _video_of(pair[0]) == _video_of(pair[1])
            frames = pair[:, :, 0, 0]
            real = frames[frames != PAD]
            assert (real % 16 >= 0).all()
            for clip in frames:
                valid = clip[clip != PAD]
                assert (torch.diff(valid) == 2).all()  # stride frame_rate, padding only at the end


def _collect(index, world: int, workers: int, epoch: int = 0) -> list[list[int]]:
    per_rank = []
    for rank in range(world):
        ds = PretrainClips(index, **_kwargs(rank=rank, world_size=world))
        ds.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=2, num_workers=workers)
        per_rank.append([_video_of(pair[0]) for batch in loader for pair in batch])
    return per_rank


def test_ranks_and_workers_split_without_overlap_and_order_ignores_workers(index):
    per_rank = _collect(index, world=2, workers=2)
    flat = [v for rank in per_rank for v in rank]
    assert len(flat) == len(set(flat)) == 28  # 30 videos, 2 ranks x 7 batches of 2
    assert per_rank == _collect(index, world=2, workers=0)  # same batches whatever num_workers
    assert _collect(index, world=1, workers=0, epoch=1) != _collect(index, world=1, workers=0, epoch=0)


def test_resume_mid_epoch_gives_the_same_remaining_batches(index):
    ds = PretrainClips(index, **_kwargs())
    full = list(DataLoader(ds, batch_size=2, num_workers=2))
    ds.set_epoch(0, start_batch=5)
    rest = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert len(rest) == len(full) - 5
    for a, b in zip(full[5:], rest, strict=True):
        assert torch.equal(a, b)


def test_finetune_and_test_datasets(index):
    train = list(DataLoader(FinetuneClips(index, **_kwargs()), batch_size=2))
    clips, labels = train[0]
    assert clips.shape == (2, 3, 4, 4) and labels.tolist() == [_video_of(c) % 3 for c in clips]
    seen = []
    for rank in range(2):
        ds = MultiViewTestClips(index, num_test_clips=3, **_kwargs(rank=rank, world_size=2, batch_size=4))
        for clips, _labels, pos in DataLoader(ds, batch_size=4, num_workers=2):
            assert clips.shape[1:] == (3, 3, 4, 4)
            seen += pos.tolist()
            first_frames = clips[:, :, 0, 0, 0] % 16
            assert (first_frames[:, 0] <= first_frames[:, -1]).all()
    assert sorted(seen) == list(range(30))


def test_wrong_grid_or_view_fails_naming_the_field(index):
    with pytest.raises(ConfigError, match="frame_size"):
        PretrainClips(index, **_kwargs(grid_size=8))
    with pytest.raises(ConfigError, match="views"):
        PretrainClips(index, views=["s256-center-noflip"], **_kwargs())

