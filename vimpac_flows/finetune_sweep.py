"""Fine-tune sweep: every grid point of a sweep file fine-tuned from one pre-training checkpoint.

    plan (configs checked, checkpoint resolved + hashed + pinned, done runs found)
      -> one `finetune` subflow per run still to do, at most ``max_parallel`` at once
      -> a results row per run as it ends -> table + summary artifacts, <output>/summary.md

Concurrency: the sweep itself bounds the runs in flight to the sweep's ``max_parallel`` (each
run is a ``sweep-run`` task that calls the fine-tune flow, so it shows as its own subflow); the
fine-tune's train/evaluate tasks carry the ``gpu`` tag, so a Prefect tag concurrency limit
(``prefect concurrency-limit create gpu N``) further bounds GPU work across every flow of the
server. A failed run (its subflow failed, or it could not start) is recorded with status
``failed`` and its error and the others go on; runs already done for the same (checkpoint
digest, config) are recorded as ``skipped``. The flow fails only when the sweep file or the
checkpoint is bad (before any work). Rows are appended as runs end, so a sweep interrupted
mid-way keeps what finished and the next sweep does the rest (a run it had not finished starts
over; within a sweep, the fine-tune's own task retries resume a preempted run from its checkpoint).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from vimpac_core.sweep import SweepConfig, load_sweep
from vimpac_core.sweep.results import METRICS, results_url
from vimpac_flows.finetune import finetune
from vimpac_tasks.sweep import plan_task, record_task, report_task


def _error_text(state: Any) -> str:
    try:
        state.result()
    except BaseException as err:  # the subflow's own exception, re-raised by result()
        return f"{type(err).__name__}: {err}"
    return f"{state.type.value}: {state.message or 'no message'}"


@task(name="sweep-run", cache_policy=NO_CACHE, persist_result=False)
def sweep_run(config: dict, run_id: str, timeout_s: float | None) -> dict:
    """Fine-tune one grid point as its own subflow; never raises, returns the outcome."""
    started = time.monotonic()
    try:
        state = finetune.with_options(flow_run_name=run_id)(config=config, timeout_s=timeout_s, return_state=True)
    except Exception as err:  # the subflow could not even start (e.g. its parameters were refused)
        return {"status": "failed", "error": f"{type(err).__name__}: {err}", "wall_time_s": time.monotonic() - started}
    wall = time.monotonic() - started
    if not state.is_completed():
        return {"status": "failed", "error": _error_text(state), "wall_time_s": wall}
    final = state.result()["evaluations"]["final"]  # the test score of the last epoch's model
    return {"status": "ok", "metrics": {m: final.get(m) for m in METRICS}, "wall_time_s": wall}


@flow(name="finetune-sweep")
def finetune_sweep(sweep: str | dict, checkpoint: str | None = None) -> dict:
    """Run the sweep (a sweep YAML path or its mapping); ``checkpoint`` overrides the file's
    (a folder or ``latest:<pre-training output>``). Returns counts, the results path and the summary."""
    logger = get_run_logger()
    config = load_sweep(sweep)
    plan = plan_task(config, checkpoint)
    record_task(config.output, plan.skipped_rows())
    counts = {"ok": 0, "failed": 0, "skipped": len(plan.runs) - len(plan.todo())}
    in_flight: list[tuple[Any, Any]] = []

    def finish(future: Any) -> None:
        planned = next(p for f, p in in_flight if f is future)
        in_flight[:] = [(f, p) for f, p in in_flight if f is not future]
        outcome = future.result()
        counts[outcome["status"]] += 1
        record_task(config.output, [plan.row(planned, **outcome)])
        logger.info("run %s: %s%s (%d of %d run(s) to do finished)", planned.run.run_id, outcome["status"],
                    f" ({outcome['error']})" if outcome.get("error") else "", counts["ok"] + counts["failed"],
                    len(plan.todo()))

    for planned in plan.todo():
        while len(in_flight) >= config.max_parallel:
            finish(next(as_completed([f for f, _ in in_flight])))
        run = sweep_run.with_options(name=f"sweep-run-{planned.run.run_id}")
        in_flight.append((run.submit(plan.finetune_config(planned), planned.run.run_id, config.timeout_s), planned))
    while in_flight:
        finish(next(as_completed([f for f, _ in in_flight])))
    summary = report_task(plan)
    logger.info("sweep %s: %d ok, %d failed, %d skipped", plan.sweep_id, counts["ok"], counts["failed"],
                counts["skipped"])
    return {"sweep_id": plan.sweep_id, "results": results_url(config.output), "summary": summary, **counts}


def run_sweep(sweep: SweepConfig, checkpoint: str | None = None) -> dict:
    """What `vimpac sweep` calls: run the ``finetune-sweep`` flow in this process."""
    return finetune_sweep(sweep=sweep.model_dump(), checkpoint=checkpoint)
