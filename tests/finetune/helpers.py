"""Token sets and configs of the fine-tuning tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vimpac_core.shards.synthetic import write_token_shards

VOCAB, GRID, FRAMES = 64, 4, 4
VIEWS = ("s32-center-noflip", "s32-top-noflip")


def time_order_rows(pairs: int, *, seed: int, prefix: str, views: tuple[str, ...] = VIEWS[:1]) -> list[dict]:
    """Videos whose classes only time order separates: for each random clip (frame t's tokens drawn
    from [16t, 16t + 16)), label 0 is the clip forward and label 1 the very same frames backward."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(pairs):
        frames = np.stack([rng.integers(16 * t, 16 * t + 16, size=(GRID, GRID)) for t in range(FRAMES)])
        for label, grid in ((0, frames), (1, frames[::-1])):
            for view in views:
                rows.append(_row(f"{prefix}{p:04d}-{label}", view, label, grid))
    return rows


def _row(video_id: str, view: str, label: int, grid: np.ndarray) -> dict:
    n = grid.shape[0]
    return {
        "video_id": video_id, "view": view, "label": label, "split": "train",
        "tokens": grid.astype(np.uint16).reshape(-1).tolist(), "num_frames": n, "grid_h": grid.shape[1],
        "grid_w": grid.shape[2], "timestamps": (np.arange(n) / 2.0).astype(np.float32).tolist(), "fps": 2.0,
        "source_uri": f"file:///videos/{video_id}.mp4", "tokenizer": "test-random",
    }


def time_order_shards(root: Path, pairs: int, *, seed: int, prefix: str = "v", rows_per_shard: int = 8, **kw) -> str:
    write_token_shards(str(root), time_order_rows(pairs, seed=seed, prefix=prefix, **kw),
                       rows_per_shard=rows_per_shard, row_group_size=4)
    return str(root)


def finetune_flat(data: str, output: str, **over) -> dict:
    """A tiny fine-tuning run (the backbone comes from ``load`` when given)."""
    flat = dict(data=data, output=output, frame_size=32, clip_len=FRAMES, frame_rate=1, bs_per_gpu=4, num_workers=0,
                epochs=2, log_every=1, device="cpu", seed=3, lr=1e-3, warm_up=0.1, dropout=0.0)
    flat.update(over)
    return flat
