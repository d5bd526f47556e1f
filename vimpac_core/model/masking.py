"""Block masking of VIMPAC (MODEL.md "Block masking"): cubes of tokens are hidden and predicted."""

from __future__ import annotations

import torch

IGNORE = -100
_KEEP_MASK, _RANDOM, _UNCHANGED = 0, 1, 2


def _uniform_int(low: int, high: torch.Tensor, shape: tuple[int, ...], generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    """Integers uniform in [low, high] (inclusive; ``high`` broadcastable to ``shape``)."""
    u = torch.rand(shape, generator=generator, device=device)
    return low + (u * (high - low + 1)).long().clamp_max(high - low)


def _sample_blocks(
    shape: tuple[int, int, int, int], mask_blocks: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """-> covered [B, K, T, H, W] bool: block k of sample b (lengths uniform, starts so it fits)."""
    b, *sizes = shape
    ranges = []
    for size, max_len in zip(sizes, (2 * sizes[0] // 3, sizes[1] // 2, sizes[2] // 2), strict=True):
        max_len = max(1, max_len)
        length = _uniform_int(1, torch.tensor(max_len, device=device), (b, mask_blocks), generator, device)
        start = _uniform_int(0, size - length, (b, mask_blocks), generator, device)
        ranges.append((start, length, size))
    covered = None
    for axis, (start, length, size) in enumerate(ranges):
        pos = torch.arange(size, device=device)
        inside = (pos >= start[..., None]) & (pos < (start + length)[..., None])  # [B, K, size]
        view = [b, mask_blocks, 1, 1, 1]
        view[2 + axis] = size
        inside = inside.reshape(view)
        covered = inside if covered is None else covered & inside
    return covered


def _choose_actions(n: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """80% keep the MASK token, 10% random visual token, 10% unchanged."""
    u = torch.rand(n, generator=generator, device=device)
    return torch.where(u < 0.8, _KEEP_MASK, torch.where(u < 0.9, _RANDOM, _UNCHANGED))


def block_mask(
    codes: torch.Tensor,
    mask_blocks: int,
    pad_id: int,
    mask_id: int,
    generator: torch.Generator | None = None,
    *,
    mask_rand_replace: bool = False,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``mask_blocks`` random blocks per sample of codes [B, T, H, W].

    Block lengths are uniform in 1..floor(2T/3) (time), 1..floor(H/2), 1..floor(W/2); starts are
    uniform so the block fits; the mask is the union of blocks minus PAD positions. A negative
    ``mask_blocks`` masks tokens i.i.d. with probability -mask_blocks/1000. With
    ``mask_rand_replace`` each block (each token when i.i.d.) keeps MASK 80%, becomes a random
    visual token (< vocab_size) 10%, or stays unchanged 10%; all are predicted.

    Returns (masked codes [B, T, H, W], labels [B, T, H, W]: the original token where masked, -100 elsewhere).
    """
    if codes.dim() != 4:
        raise ValueError(f"block_mask needs codes [B, T, H, W], got shape {tuple(codes.shape)}")
    if mask_rand_replace and vocab_size is None:
        raise ValueError("block_mask: mask_rand_replace needs vocab_size (random tokens are drawn below it)")
    device = codes.device
    action = torch.full(codes.shape, _KEEP_MASK, dtype=torch.long, device=device)
    if mask_blocks < 0:
        prob = -mask_blocks / 1000.0
        mask = torch.rand(codes.shape, generator=generator, device=device) < prob
        if mask_rand_replace:
            action = _choose_actions(tuple(codes.shape), generator, device)
    elif mask_blocks == 0:
        mask = torch.zeros_like(codes, dtype=torch.bool)
    else:
        covered = _sample_blocks(tuple(codes.shape), mask_blocks, generator, device)
        mask = covered.any(dim=1)
        if mask_rand_replace:
            per_block = _choose_actions((codes.shape[0], mask_blocks), generator, device)
            for k in range(mask_blocks):  # a later block decides for tokens covered twice
                action = torch.where(covered[:, k], per_block[:, k, None, None, None], action)
    mask &= codes != pad_id
    labels = torch.where(mask, codes, torch.full_like(codes, IGNORE))
    masked = torch.where(mask & (action == _KEEP_MASK), torch.full_like(codes, mask_id), codes)
    if mask_rand_replace:
        random_tokens = torch.randint(0, vocab_size, codes.shape, generator=generator, device=device)
        masked = torch.where(mask & (action == _RANDOM), random_tokens, masked)
    return masked, labels
