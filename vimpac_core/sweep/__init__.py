"""Fine-tune sweeps: a grid of fine-tune runs over one pre-training checkpoint (no Prefect here).

grid.py         sweep YAML -> run configs (tasks x grid), stable order and ids
checkpoints.py  ``latest:<pre-training output>``, the weights digest (cached), pinning
results.py      the Parquet results table, run keys, what is already done
plan.py         all of the above for one sweep, before any fine-tuning
summary.py      the markdown summary (best per task, change against the previous sweep)
"""

from vimpac_core.sweep.checkpoints import ResolvedCheckpoint, checkpoint_digest, resolve_checkpoint
from vimpac_core.sweep.grid import RunSpec, SweepConfig, expand_runs, load_sweep
from vimpac_core.sweep.plan import PlannedRun, SweepPlan, plan_sweep
from vimpac_core.sweep.results import append_results, read_results, run_key
from vimpac_core.sweep.summary import sweep_summary

__all__ = [
    "PlannedRun", "ResolvedCheckpoint", "RunSpec", "SweepConfig", "SweepPlan", "append_results",
    "checkpoint_digest", "expand_runs", "load_sweep", "plan_sweep", "read_results", "resolve_checkpoint",
    "run_key", "sweep_summary",
]
