"""block_mask: block shapes, union minus PAD, i.i.d. mode, 80/10/10 replacement (seeded)."""

from __future__ import annotations

import pytest
import torch

from vimpac_core.model import block_mask

V, PAD, MASK = 100, 101, 104


def _codes(b: int = 64, t: int = 5, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (b, t, h, w), generator=torch.Generator().manual_seed(seed))


def _bounding_box(mask: torch.Tensor) -> list[int]:
    idx = mask.nonzero()
    return [int(idx[:, a].max() - idx[:, a].min() + 1) for a in range(3)]


def test_single_block_is_a_cube_within_limits() -> None:
    codes = _codes(b=400)
    masked, labels = block_mask(codes, 1, PAD, MASK, torch.Generator().manual_seed(1))
    mask = labels != -100
    sizes = []
    for b in range(codes.shape[0]):
        lt, lh, lw = _bounding_box(mask[b])
        assert mask[b].sum() == lt * lh * lw  # a full cube
        assert 1 <= lt <= 3 and 1 <= lh <= 4 and 1 <= lw <= 4  # floor(2*5/3), floor(8/2)
        sizes.append((lt, lh, lw))
    # every length occurs (uniform lengths), and blocks start anywhere they fit
    assert {s[0] for s in sizes} == {1, 2, 3} and {s[1] for s in sizes} == {1, 2, 3, 4}
    starts_t = {int(mask[b].nonzero()[:, 0].min()) for b in range(codes.shape[0])}
    assert starts_t == {0, 1, 2, 3, 4}
    assert torch.equal(masked[mask], torch.full_like(masked[mask], MASK))
    assert torch.equal(masked[~mask], codes[~mask])
    assert torch.equal(labels[mask], codes[mask])


def test_union_of_blocks_minus_pad() -> None:
    codes = _codes()
    codes[:, :, :, :2] = PAD
    _, labels = block_mask(codes, 5, PAD, MASK, torch.Generator().manual_seed(2))
    mask = labels != -100
    assert not mask[:, :, :, :2].any()
    assert mask.any(dim=(1, 2, 3)).all()
    more = block_mask(codes, 20, PAD, MASK, torch.Generator().manual_seed(2))[1] != -100
    assert more.float().mean() > mask.float().mean()


def test_seeded_generator_is_reproducible() -> None:
    codes = _codes()
    a = block_mask(codes, 5, PAD, MASK, torch.Generator().manual_seed(7))
    b = block_mask(codes, 5, PAD, MASK, torch.Generator().manual_seed(7))
    c = block_mask(codes, 5, PAD, MASK, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


def test_negative_means_iid_probability() -> None:
    codes = _codes(b=200)
    _, labels = block_mask(codes, -150, PAD, MASK, torch.Generator().manual_seed(3))
    rate = (labels != -100).float().mean().item()
    assert abs(rate - 0.15) < 0.01
    assert (block_mask(codes, 0, PAD, MASK)[1] == -100).all()


def test_rand_replace_80_10_10_per_block() -> None:
    codes = _codes(b=2000, t=4, h=4, w=4)
    masked, labels = block_mask(codes, 1, PAD, MASK, torch.Generator().manual_seed(4), mask_rand_replace=True,
                                vocab_size=V)
    mask = labels != -100
    kinds = []
    for b in range(codes.shape[0]):
        m = masked[b][mask[b]]
        if (m == MASK).all():
            kinds.append("mask")
        elif torch.equal(m, codes[b][mask[b]]):
            kinds.append("same")
        else:
            assert (m < V).all() and not (m == MASK).any()  # a whole block of random visual tokens
            kinds.append("random")
    share = {k: kinds.count(k) / len(kinds) for k in ("mask", "random", "same")}
    assert abs(share["mask"] - 0.8) < 0.03 and abs(share["random"] - 0.1) < 0.025
    assert abs(share["same"] - 0.1) < 0.03  # a 1-token random block may equal its original by chance


def test_rand_replace_needs_vocab_size() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        block_mask(_codes(), 2, PAD, MASK, mask_rand_replace=True)
