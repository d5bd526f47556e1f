"""Prefect tasks of the fine-tune sweep: thin wrappers over ``vimpac_core.sweep``.

Plan (configs checked, checkpoint resolved, hashed and pinned, done runs found), record rows
in the results table, and report (table + markdown artifacts, ``<output>/summary.md``). The
fine-tune runs themselves are subflows started by vimpac_flows/finetune_sweep.py.
"""

from __future__ import annotations

import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from vimpac_core.storage import atomic_write_bytes, join
from vimpac_core.sweep import SweepConfig, SweepPlan, append_results, plan_sweep, read_results, sweep_summary
from vimpac_core.sweep.results import METRICS

SUMMARY_NAME = "summary.md"
ARTIFACT_COLUMNS = ("run_id", "task", "status", *METRICS, "wall_time_s")


@task(name="sweep-plan", cache_policy=NO_CACHE, persist_result=False)
def plan_task(sweep: SweepConfig, checkpoint: str | None) -> SweepPlan:
    """Every run of the sweep with its key; fails on a bad config or checkpoint before any work."""
    logger = get_run_logger()
    plan = plan_sweep(sweep, checkpoint)
    logger.info("checkpoint %s (sha256 %s) from %s: %s", plan.checkpoint.path, plan.digest[:12],
                plan.checkpoint.source, plan.checkpoint.note)
    logger.info("sweep %s: %d run(s), %d to do, %d already done", plan.sweep_id, len(plan.runs), len(plan.todo()),
                len(plan.runs) - len(plan.todo()))
    return plan


@task(name="sweep-record", cache_policy=NO_CACHE, persist_result=False)
def record_task(output: str, rows: list[dict]) -> int:
    """Append ``rows`` to the results table atomically; returns the table's row count."""
    return append_results(output, rows).num_rows


def _artifact_key(name: str, what: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "sweep"
    return f"sweep-{slug}-{what}"


def _short(value: object) -> object:
    return round(value, 4) if isinstance(value, float) else value


@task(name="sweep-report", cache_policy=NO_CACHE, persist_result=False)
def report_task(plan: SweepPlan) -> str:
    """This sweep's rows as a table artifact, the markdown summary as an artifact and summary.md."""
    sweep = plan.sweep
    table = read_results(sweep.output)
    rows = [r for r in table.to_pylist() if r["sweep_id"] == plan.sweep_id] if table is not None else []
    columns = [*ARTIFACT_COLUMNS, *plan.swept, "error"]
    cells = [{c: _short(r.get(c)) if c != "error" else (r["error"] or "").strip()[-300:] for c in columns}
             for r in rows]
    create_table_artifact(key=_artifact_key(sweep.name, "results"), table=cells,
                          description=f"fine-tune sweep {sweep.name} {plan.sweep_id}: one row per run")
    summary = sweep_summary(table, plan.sweep_id, name=sweep.name, checkpoint_note=plan.checkpoint.note,
                            swept=plan.swept) if table is not None else f"# Fine-tune sweep `{sweep.name}`\n\nNo runs.\n"
    create_markdown_artifact(key=_artifact_key(sweep.name, "summary"), markdown=summary,
                             description=f"fine-tune sweep {sweep.name}: best per task, change against the previous")
    atomic_write_bytes(join(sweep.output, SUMMARY_NAME), summary.encode())
    return summary
