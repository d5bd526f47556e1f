"""`vimpac demo [--out demo_out]`: the whole pipeline on the built-in demo dataset, on CPU.

Writes the demo clips to OUT/data (an unlabelled pool, and a labelled grow-or-shrink task whose
classes differ only in time order, see vimpac_core/demo.py), then runs the ``pipeline`` flow with
configs/demo.yaml: train a tiny VQ-VAE (OUT/tokenizer), ingest the pool (OUT/tokens32), pre-train
on it with 2 ranks (OUT/pretrain), ingest the task (OUT/tasks/grow-or-shrink/tokens32), fine-tune
and test it from the pre-trained weights (.../finetune) and from random weights (.../scratch).
Without PREFECT_API_URL, Prefect starts a temporary local server for the run. Prints the outputs,
both test scores and the pre-training gain; pictures go to OUT/reports.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

from vimpac_core import interrupts
from vimpac_core.demo import make_demo_dataset
from vimpac_core.errors import ConfigError
from vimpac_core.storage import check_output_dir

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"  # packaged
# What the demo writes directly in --out (the pipeline's outputs; anything else is someone else's).
DEMO_OUTPUT = ("data", "tokenizer", "tokens*", "pretrain", "tasks", "reports", "sweeps")  # see docs/architecture.md


def register(sub: argparse._SubParsersAction) -> None:
    """Add `demo` to the `vimpac` parser."""
    p = sub.add_parser("demo", help="run the whole pipeline on a built-in synthetic dataset (CPU, minutes)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="pipeline YAML (default: configs/demo.yaml)")
    sizes = {k: v.default for k, v in inspect.signature(make_demo_dataset).parameters.items()}  # never typed twice
    p.add_argument("--pool", type=int, default=sizes["pool"], help=f"unlabelled pre-training clips (default: {sizes['pool']})")
    p.add_argument("--train", type=int, default=sizes["train"],
                   help=f"labelled training clips of the task (default: {sizes['train']})")
    p.add_argument("--test", type=int, default=sizes["test"], help=f"labelled test clips of the task (default: {sizes['test']})")
    p.add_argument("--json", action="store_true", help="also print the full summary as JSON")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out that holds other files too (they are kept)")
    p.set_defaults(func=cmd_demo, on_interrupt=lambda args: (
        f"the outputs so far in {args.out} are kept; run the same command again to continue (the tokenizer "
        "resumes from its checkpoint, committed shards are skipped)"))


def cmd_demo(args: argparse.Namespace) -> int:
    from vimpac_core.pipeline_config import load_pipeline_config

    out = Path(args.out).resolve()
    started = time.monotonic()
    check_output_dir(str(out), DEMO_OUTPUT, overwrite=args.overwrite, owner="demo")
    try:
        pool, task = make_demo_dataset(out / "data", pool=args.pool, train=args.train, test=args.test)
        config = load_pipeline_config(args.config, videos=str(pool), out=str(out), task_videos=str(task))
    except ValueError as err:  # a bad --pool/--train/--test: one line, exit 2, like every bad input
        raise ConfigError(str(err)) from None
    print(f"demo data: {args.pool} unlabelled clips ({pool}), {args.train} + {args.test} labelled ({task})")
    from vimpac_flows.pipeline import run_pipeline, summary_markdown
    from vimpac_flows.server import prefect_api

    try:
        with prefect_api():
            summary = run_pipeline(config)
    except Exception as err:  # the flow's log above has the traceback; end with one clear line
        if interrupts.stop_requested():
            raise  # the user stopped it: the command's stop line says what was kept
        print(f"vimpac demo: error: the demo pipeline failed ({type(err).__name__}: {err}); outputs so far are in {out}",
              file=sys.stderr)
        return 1
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; outputs in {out}")
    print(summary_markdown(summary).replace("`", ""))
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    return 0
