"""`vimpac make-list`: a dataset's own annotation files -> a video list for `vimpac ingest`.

No Prefect here: reading a few annotation files is quick, local work.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from vimpac_core.annotations import DATASETS, DEFAULT_TEMPLATE, make_list, missing_videos, write_video_list


def register(sub: argparse._SubParsersAction) -> None:
    """Add make-list to the `vimpac` parser."""
    p = sub.add_parser("make-list", help="a dataset's annotation files -> a video list (+ classes) for ingest",
                       description="Write the video list of ssv2, diving48 (V2), ucf101, hmdb51 or kinetics400 "
                                   "from the dataset's own annotation files, and <list>.classes.json for "
                                   "`vimpac ingest --class-index`.")
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("annotation_dir", help="folder of the dataset's annotation files (any fsspec URL)")
    p.add_argument("--videos-root", required=True, help="folder (fsspec URL) holding the dataset's videos")
    p.add_argument("--out", required=True, help="the list to write: .csv, .jsonl or .parquet")
    p.add_argument("--split-id", type=int, choices=(1, 2, 3), help="official split of ucf101/hmdb51 (default 1)")
    p.add_argument("--split", action="append", dest="splits", metavar="NAME",
                   help="keep only this split (train, val, test; repeatable; default: all)")
    p.add_argument("--uri-template", help=f"kinetics400: video path under --videos-root per row (default "
                                          f"{DEFAULT_TEMPLATE!r}; without start/end fields, e.g. "
                                          "'{youtube_id}.mp4', rows are segments of whole videos)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_make_list)


def cmd_make_list(args: argparse.Namespace) -> int:
    made = make_list(args.dataset, args.annotation_dir, args.videos_root, split_id=args.split_id,
                     uri_template=args.uri_template, splits=args.splits)
    classes = write_video_list(made, args.out, overwrite=args.overwrite)
    missing = missing_videos(made.rows)
    summary = {
        "dataset": made.dataset,
        "out": args.out,
        "classes_file": classes,
        "videos": len(made.rows),
        "splits": dict(sorted(Counter(r.split for r in made.rows).items())),
        "classes": len(made.classes),
        "segments": sum(r.start is not None or r.end is not None for r in made.rows),
        **made.notes,
        "missing_local_videos": len(missing),
    }
    print(json.dumps(summary))
    if missing:
        print(f"vimpac make-list: warning: {len(missing)} video(s) not found under {args.videos_root}, e.g. "
              f"{missing[:3]}; ingest will record them as failed", file=sys.stderr)
    return 0
