"""The built-in demo dataset: a task that needs temporal order, plus an unlabelled pool.

Every clip shows one shape (square or disc, random colours, slow drift) over a gradient, whose
size changes steadily over the clip. Class ``grow`` plays the clip forward; its twin class
``shrink`` is the same kind of clip played backwards (frames reversed). Any single frame is
equally likely in both classes, so only the order of frames tells them apart: a classifier has
to model time. The unlabelled pool (the pre-training data) holds clips of both directions with no
label; the labelled task list has ``train`` and ``test`` splits. Fine-tuning on few labelled clips
from a backbone pre-trained on the pool beats the same fine-tuning from random weights, which is
what ``vimpac demo`` shows.
"""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

DEMO_CLASSES = ("grow", "shrink")
POOL_LIST, TASK_LIST = "pool.csv", "task.csv"


def growth_frames(rng: np.random.Generator, num_frames: int, size: int) -> np.ndarray:
    """uint8 [num_frames, size, size, 3]: one shape whose half-width grows linearly over the clip."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background = rng.uniform(20, 120, 3).astype(np.float32)
    gradient = rng.uniform(-40, 40, 3).astype(np.float32)
    colour = rng.uniform(130, 255, 3).astype(np.float32)
    margin = size / 4
    cx, cy = rng.uniform(margin, size - margin, 2)
    vx, vy = rng.uniform(-0.02, 0.02, 2) * size  # pixels per frame
    r0, r1 = rng.uniform(0.05, 0.09) * size, rng.uniform(0.28, 0.4) * size
    square = rng.random() < 0.5
    base = background + gradient * (xx[..., None] / size)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for i in range(num_frames):
        radius = r0 + (r1 - r0) * i / max(num_frames - 1, 1)
        x, y = cx + vx * i, cy + vy * i
        if square:
            inside = (np.abs(xx - x) < radius) & (np.abs(yy - y) < radius)
        else:
            inside = (xx - x) ** 2 + (yy - y) ** 2 < radius * radius
        frame = base.copy()
        frame[inside] = colour
        frames[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def write_clip(path: Path, frames: np.ndarray, fps: float) -> Path:
    """Encode uint8 [T, H, W, 3] frames as an H.264 MP4 (yuv420p, near-lossless)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_demo_dataset(folder: str | Path, *, pool: int = 192, train: int = 32, test: int = 64,
                      seconds: float = 4.0, fps: float = 4.0, size: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """Write the clips and two video lists; returns (pool list, task list).

    Args:
        folder: output folder (created); clips go to ``folder/clips/``.
        pool: unlabelled pre-training clips (half of each direction, shuffled).
        train, test: labelled clips of the task's ``train`` and ``test`` splits (classes alternate).
        seconds, fps: clip duration (seconds) and frame rate (frames per second).
        size: frame side in pixels (even, >= 16).
        seed: the clips drawn (pool, train and test use disjoint streams of it).

    The lists are CSV with columns uri (relative to the list) and, for the task, label and split.
    """
    if train < 2 or test < 2:
        raise ValueError(f"train={train}, test={test}: the task needs at least 2 clips per split (one per class)")
    if pool < 1 or seconds <= 0 or fps <= 0 or size < 16 or size % 2:
        raise ValueError(f"pool={pool}, seconds={seconds}, fps={fps}, size={size}: need pool >= 1, positive "
                         "seconds and fps, and an even size >= 16")
    out = Path(folder)
    num_frames = max(2, round(seconds * fps))
    jobs = [("pool", i, i % 2) for i in range(pool)]
    jobs += [("train", i, i % 2) for i in range(train)] + [("test", i, i % 2) for i in range(test)]
    pool_rows, task_rows = [], []
    streams = {"pool": 1, "train": 2, "test": 3}
    for split, i, label in tqdm(jobs, desc="demo clips", unit="clip"):
        rng = np.random.default_rng([seed, streams[split], i])
        frames = growth_frames(rng, num_frames, size)
        if label == 1:
            frames = frames[::-1]
        rel = f"clips/{split}_{i:04d}.mp4"
        write_clip(out / rel, frames, fps)
        if split == "pool":
            pool_rows.append({"uri": rel})
        else:
            task_rows.append({"uri": rel, "label": DEMO_CLASSES[label], "split": split})
    order = np.random.default_rng([seed, 0]).permutation(len(pool_rows))  # directions mixed across shards
    pool_path, task_path = out / POOL_LIST, out / TASK_LIST
    _write_csv(pool_path, [pool_rows[k] for k in order], ["uri"])
    _write_csv(task_path, task_rows, ["uri", "label", "split"])
    return pool_path, task_path


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
