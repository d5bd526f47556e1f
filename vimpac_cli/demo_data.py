"""`vimpac demo-data OUT`: the sample inputs README.md's examples use, made on this machine.

Writes real H.264 clips of moving shapes in two classes (``slow``, and ``fast``: twice the motion
per second) to OUT/clips, and two lists: OUT/videos.csv (the train clips, plus one row naming a
file that does not exist, so that failures and `vimpac rerun-failed` can be shown) and
OUT/val.csv (the val clips: every 4th).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from vimpac_core.errors import ConfigError
from vimpac_core.storage import check_output_dir

MISSING = "clips/missing.mp4"
CLASSES = ("slow", "fast")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `demo-data` to the `vimpac` parser."""
    p = sub.add_parser("demo-data", help="write the sample clips and video lists README.md's examples use",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output folder (created)")
    p.add_argument("--videos", type=int, default=8, help="number of clips, every 4th for val (default: 8)")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each clip (default: 3)")
    p.set_defaults(func=cmd_demo_data, on_interrupt=lambda args: f"the clips written so far are in {args.out}")


def write_clips(out: Path, videos: int, seconds: float, fps: float = 8.0, size: int = 64) -> list[dict]:
    """Write the clips; returns their list rows (uri relative to ``out``, label, split)."""
    from vimpac_core.video.synthetic import write_synthetic_video

    rows = []
    for i in range(videos):
        label = CLASSES[i % 2]
        speed = 1 if label == "slow" else 2  # twice the drawn frames in the same time: twice the motion
        rel = f"clips/{label}_{i}.mp4"
        write_synthetic_video(out / rel, num_frames=round(seconds * fps) * speed, fps=fps * speed, width=size,
                              height=size, seed=i)
        rows.append({"uri": rel, "label": label, "split": "val" if (i + 1) % 4 == 0 else "train"})
    return rows


def cmd_demo_data(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_output_dir(str(out), ("clips", "videos.csv", "val.csv"), overwrite=False, owner="demo-data")
    if args.videos < 2:
        raise ConfigError(f"--videos: {args.videos} is too few (at least 2, one per class)")
    if args.seconds <= 0:
        raise ConfigError(f"--seconds: {args.seconds} is not a positive duration")
    rows = write_clips(out, args.videos, args.seconds)
    train = [r for r in rows if r["split"] == "train"] + [{"uri": MISSING, "label": "slow", "split": "train"}]
    val = [r for r in rows if r["split"] == "val"]
    for name, part in (("videos.csv", train), ("val.csv", val)):
        with open(out / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["uri", "label", "split"])
            writer.writeheader()
            writer.writerows(part)
    print(f"{len(rows)} clips in {out / 'clips'}; {out / 'videos.csv'}: {len(train)} rows ({MISSING} does not "
          f"exist, on purpose); {out / 'val.csv'}: {len(val)} rows")
    return 0
