"""`vimpac demo [--out demo_out]`: the whole pipeline on the built-in demo dataset, on CPU.

Writes 8 tiny labelled synthetic clips and their list to OUT/data, then runs the ``pipeline``
flow with configs/demo.yaml: train a tiny VQ-VAE (OUT/tokenizer), ingest at frame 32 and 64
(OUT/tokens32, OUT/tokens64), pre-train stage 1 on 2 ranks then stage 2 at frame 64
(OUT/pretrain/stage1, OUT/pretrain/stage2). Without PREFECT_API_URL, Prefect starts a temporary
local server for the run. Prints where the outputs are and their metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from vimpac_core import interrupts
from vimpac_core.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    """Add `demo` to the `vimpac` parser."""
    p = sub.add_parser("demo", help="run the whole pipeline on a built-in synthetic dataset (CPU, minutes)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="pipeline YAML (default: configs/demo.yaml)")
    p.add_argument("--videos", type=int, default=8, help="number of demo clips (default: 8)")
    p.add_argument("--seconds", type=float, default=4.0, help="duration of each clip in seconds (default: 4)")
    p.add_argument("--json", action="store_true", help="also print the full summary as JSON")
    p.set_defaults(func=cmd_demo, on_interrupt=lambda args: (
        f"the outputs so far in {args.out} are kept; run the same command again to continue (the tokenizer "
        "resumes from its checkpoint, committed shards are skipped)"))


def cmd_demo(args: argparse.Namespace) -> int:
    from vimpac_core.demo import make_demo_dataset
    from vimpac_core.pipeline_config import load_pipeline_config

    out = Path(args.out).resolve()
    started = time.monotonic()
    try:
        videos = make_demo_dataset(out / "data", videos=args.videos, seconds=args.seconds)
        config = load_pipeline_config(args.config, videos=str(videos), out=str(out))
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"demo data: {args.videos} clips, list {videos}")
    from flows.pipeline import run_pipeline, summary_markdown
    from flows.server import prefect_api

    try:
        with prefect_api():
            summary = run_pipeline(config)
    except Exception as err:  # the flow's log above has the traceback; end with one clear line
        if interrupts.stop_requested():
            raise  # the user stopped it: the command's stop line says what was kept
        print(f"error: the demo pipeline failed ({type(err).__name__}: {err}); outputs so far are in {out}",
              file=sys.stderr)
        return 1
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; outputs in {out}")
    print(summary_markdown(summary).replace("`", ""))
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    return 0
