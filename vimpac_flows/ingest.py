"""Flows of the ingest stage: ``ingest`` (list -> token shards) and ``rerun_failed`` (out folder).

The flows only orchestrate: plan (a task), fan out one task per shard on the configured task
runner (threads by default, a Dask cluster via prefect-dask), report progress and per-shard
stats as artifacts. ``run_ingest``/``run_rerun_failed`` pick the task runner from the config
and are what the CLI calls.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from vimpac_core import interrupts
from vimpac_core.config import IngestConfig
from vimpac_core.errors import ConfigError
from vimpac_tasks.ingest import (
    load_ingest_plan,
    prepare_ingest,
    rerun_targets,
    result_storage_for,
    retry_shard,
    tokenize_shard,
)


class ShardTasksFailed(RuntimeError):
    """Some shard tasks failed after their retries; the others were committed."""


def _collect(futures: list, title: str) -> list[dict]:
    """Wait for shard futures, updating a progress artifact; raise after all if any failed."""
    progress_id = create_progress_artifact(0.0, description=f"{title}: shards done")
    stats, failures = [], []
    for n, future in enumerate(as_completed(futures), start=1):
        try:
            stats.append(future.result())
        except Exception as exc:  # the task failed after its retries; the other shards go on
            failures.append(f"{type(exc).__name__}: {exc}")
        # Stopping: queued shards are cancelled as the flow ends, the one in flight stops uncommitted.
        interrupts.check_stop(title)
        update_progress_artifact(progress_id, 100.0 * n / max(len(futures), 1))
    if not futures:
        update_progress_artifact(progress_id, 100.0)
    stats.sort(key=lambda s: s["shard_id"])
    create_table_artifact(table=stats or [{"shard_id": "-", "videos": 0}], description=f"{title}: per-shard stats")
    if failures:
        raise ShardTasksFailed(f"{len(failures)} shard task(s) failed (run `vimpac rerun-failed`): {failures[:3]}")
    return stats


def _summary(stats: list[dict]) -> dict:
    keys = ("videos", "ok", "failed", "rows", "frames")
    out = {k: sum(s[k] for s in stats) for k in keys}
    out["shards"] = len(stats)
    out["skipped_shards"] = sum(bool(s.get("skipped")) for s in stats)
    out["extracted_videos"] = sum(s["extracted"] for s in stats)
    return out


@flow(name="ingest")
def ingest(config: IngestConfig) -> dict:
    """Video list -> committed token shards in ``config.out``; committed shards are skipped."""
    plan = prepare_ingest(config)
    shard_task = tokenize_shard.with_options(result_storage=result_storage_for(config.out),
                                             retries=config.task_retries)
    futures = [shard_task.submit(shard, config, plan.tokenizer_id) for shard in plan.shards]
    summary = _summary(_collect(futures, "ingest"))
    get_run_logger().info("ingest %s -> %s: %s", config.inputs, config.out, summary)
    return summary


@flow(name="rerun-failed")
def rerun_failed(out: str, include_permanent: bool = False) -> dict:
    """Re-extract only the failed videos (retriable ones; permanent too when asked) and the
    shards that never committed; everything else in ``out`` is left as it is."""
    plan = load_ingest_plan(out)
    targets = rerun_targets(plan, include_permanent)
    task_ = retry_shard.with_options(result_storage=result_storage_for(out), retries=plan.config.task_retries)
    futures = [task_.submit(shard, plan.config, plan.tokenizer_id, ids) for shard, ids in targets]
    summary = _summary(_collect(futures, "rerun-failed"))
    get_run_logger().info("rerun-failed %s: %s", out, summary)
    return summary


def build_task_runner(config: IngestConfig):
    """ThreadPoolTaskRunner by default; a DaskTaskRunner on ``dask_address`` or a LocalCluster."""
    if config.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if config.dask_address:
            _check_api_for_remote_workers(config.dask_address)
            return DaskTaskRunner(address=config.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": config.max_workers, "processes": False,
                                              "threads_per_worker": 1, "dashboard_address": None})
    return ThreadPoolTaskRunner(max_workers=config.max_workers)


def _check_api_for_remote_workers(address: str) -> None:
    """Workers of an existing cluster report task runs to the Prefect API: a temporary server, which
    lives in this process only, is out of their reach (each would start its own and time out)."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ConfigError(
            f"dask_address {address}: the Dask workers need a Prefect server to report to; start one "
            "(`prefect server start`) and set PREFECT_API_URL for this command and for every Dask worker"
        )


def run_ingest(config: IngestConfig) -> dict:
    """Run the ``ingest`` flow with the task runner the config asks for."""
    return ingest.with_options(task_runner=build_task_runner(config))(config=config)


def run_rerun_failed(out: str, *, include_permanent: bool = False, config: IngestConfig | None = None) -> dict:
    """Run ``rerun_failed``; the task runner comes from ``config`` (default: the plan's own settings)."""
    if config is None:
        from vimpac_core.ingest import load_plan

        config = load_plan(out).config
    runner = build_task_runner(config)
    return rerun_failed.with_options(task_runner=runner)(out=out, include_permanent=include_permanent)
