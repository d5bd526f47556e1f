"""`vimpac sweep SWEEP.yaml [--checkpoint C] [--max-parallel N] [--check]`: a fine-tune sweep.

Runs every grid point of the sweep file (tasks x the grid's lists, see configs/sweeps/) as its
own fine-tune subflow of the ``finetune-sweep`` flow, at most ``max_parallel`` at once, and
appends one row per run to ``<output>/results.parquet``. A run already done for the same
checkpoint digest and config is skipped, so running the same sweep again only does new work.
``--checkpoint`` overrides the file's: a checkpoint folder, or ``latest:<pre-training output>``
(the newest complete checkpoint there, e.g. of a pre-training still running). ``--check``
validates every run config and resolves the checkpoint, prints the plan, and runs nothing.
Prints the summary (best run per task, change against the previous sweep); exits 1 when a run
failed (its error is in the table and the summary), 2 on a bad sweep file or checkpoint.
"""

from __future__ import annotations

import argparse
import sys

from vimpac_core.storage import check_output_dir

# What a sweep writes in its output folder (anything else there is the user's).
SWEEP_OUTPUT = ("results.parquet", "summary.md", "runs", "checkpoints")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `sweep` to the `vimpac` parser."""
    p = sub.add_parser("sweep", help="fine-tune a grid of configs over one pre-training checkpoint (Prefect flow)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", help="sweep YAML, e.g. configs/sweeps/example.yaml")
    p.add_argument("--checkpoint", help="checkpoint folder or latest:<pre-training output> (default: the file's)")
    p.add_argument("--max-parallel", type=int, help="fine-tune runs at once (default: the file's max_parallel)")
    p.add_argument("--check", action="store_true", help="print the plan (runs, checkpoint, skips); run nothing")
    p.add_argument("--overwrite", action="store_true",
                   help="write the sweep's files into an output folder that holds other files (they are kept)")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from vimpac_core.sweep import load_sweep, plan_sweep
    from vimpac_core.sweep.plan import validate_sweep

    sweep = load_sweep(args.sweep)  # errors: one line, exit 2 (cli.main)
    if args.max_parallel is not None:
        sweep = load_sweep({**sweep.model_dump(), "max_parallel": args.max_parallel})
    validate_sweep(sweep, args.checkpoint)  # bad configs and checkpoints: one line, before the flow starts
    check_output_dir(sweep.output, SWEEP_OUTPUT, overwrite=args.overwrite, owner="sweep")
    if args.check:
        plan = plan_sweep(sweep, args.checkpoint, pin=False)
        print(f"checkpoint {plan.checkpoint.path} (sha256 {plan.digest[:12]}): {plan.checkpoint.note}")
        for p in plan.runs:
            print(f"{'skip' if p.done else 'run '} {p.run.run_id} {p.run.swept} -> {p.output}")
        print(f"{len(plan.runs)} run(s): {len(plan.todo())} to do, {len(plan.runs) - len(plan.todo())} already done")
        return 0
    from vimpac_flows.finetune_sweep import run_sweep
    from vimpac_flows.server import prefect_api

    with prefect_api():  # a temporary server in its own session: Ctrl-C reaches only this command
        result = run_sweep(sweep, args.checkpoint)
    print(result["summary"])
    print(f"results: {result['results']}")
    if result["failed"]:
        print(f"vimpac sweep: {result['failed']} run(s) failed; see the summary above", file=sys.stderr)
        return 1
    return 0
