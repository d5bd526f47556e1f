"""The built-in demo dataset: a handful of tiny labelled synthetic clips and their CSV video list.

Each clip is moving coloured shapes over a gradient (``write_synthetic_video``); the two classes
differ in their motion's frame rate (class ``fast`` is written at twice the source frame rate of
``slow`` over the same duration, so its shapes move twice as far per second). Small enough that the
whole pipeline (tokenizer, ingest, two pre-training stages) runs on a 2-core CPU in a few minutes.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tqdm.auto import tqdm

from vimpac_core.video.synthetic import write_synthetic_video

DEMO_CLASSES = ("slow", "fast")
VIDEO_LIST = "videos.csv"


def make_demo_dataset(folder: str | Path, *, videos: int = 8, seconds: float = 4.0, fps: float = 8.0,
                      width: int = 64, height: int = 64, val_every: int = 4) -> Path:
    """Write ``videos`` clips (classes alternate) and ``folder/videos.csv``; returns the list's path.

    Args:
        folder: output folder (created); clips go to ``folder/clips/<class>_<i>.mp4``.
        videos: number of clips (>= 2, so both classes appear).
        seconds: duration of each clip (seconds).
        fps: frame rate of the ``slow`` clips (frames per second); ``fast`` ones are drawn with
            twice the motion per second.
        width, height: frame size in pixels (even, >= 16).
        val_every: every ``val_every``-th clip gets split ``val`` (the others ``train``).

    The CSV has columns uri (relative to the list), label (class name), split.
    """
    if videos < 2:
        raise ValueError(f"videos={videos}: the demo needs at least 2 clips (one per class)")
    if seconds <= 0 or fps <= 0:
        raise ValueError(f"seconds={seconds} and fps={fps} must be positive")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    frames = max(1, round(seconds * fps))
    rows = []
    for i in tqdm(range(videos), desc="demo clips", unit="clip"):
        label = DEMO_CLASSES[i % len(DEMO_CLASSES)]
        rel = f"clips/{label}_{i}.mp4"
        # fast: twice the drawn frames in the same duration -> shapes move 2x as far per second.
        speed = 1 if label == "slow" else 2
        write_synthetic_video(out / rel, num_frames=frames * speed, fps=fps * speed, width=width, height=height,
                              seed=i)
        split = "val" if val_every and (i + 1) % val_every == 0 else "train"
        rows.append({"uri": rel, "label": label, "split": split})
    path = out / VIDEO_LIST
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["uri", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return path
