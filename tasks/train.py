"""Prefect tasks of pre-training: one task per stage, which runs torchrun as a subprocess.

Thin wrappers over vimpac_core.train.launch: the output of every rank streams into the run
logger line by line; a timeout or a cancellation kills the whole process group (SIGTERM to the
flow-run process included, see launch.py). Tagged ``gpu`` so a concurrency limit on that tag
keeps two stages off one GPU machine.

Retries: a stage that was interrupted (a rank killed by preemption, a timeout) is retried, up to
``RETRIES`` times, only when it left a checkpoint written with this same config; the retry resumes
from it. Config errors, permanent rank errors and cancellations are never retried.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.runtime import task_run as current_task_run

from vimpac_core.errors import TransientError
from vimpac_core.train.config import PretrainConfig
from vimpac_core.train.launch import launch_stage, resume_point

METRIC_COLUMNS = ("stage", "step", "epoch", "loss", "mlm_loss", "nce_loss", "mask_accuracy", "lr", "clips_per_s",
                  "knn_top1", "checkpoint")
RETRIES, RETRY_DELAY_S = 2, 30


def retry_from_checkpoint(task: object, task_run: TaskRun, state: State) -> bool:
    """Prefect retry_condition_fn: retry a retriable failure that left a resumable checkpoint."""
    try:
        state.result()
    except TransientError as err:
        return getattr(err, "resume_from", None) is not None
    except BaseException:
        return False
    return False


@task(name="pretrain-stage", tags=["gpu"], cache_policy=NO_CACHE, persist_result=False, retries=RETRIES,
      retry_delay_seconds=RETRY_DELAY_S, retry_condition_fn=retry_from_checkpoint)
def pretrain_stage(config: dict, stage: int, timeout_s: float | None = None) -> dict:
    """Run one stage (flat PretrainConfig) under torchrun; returns its final metrics."""
    logger = get_run_logger()
    cfg = PretrainConfig.from_flat(config)
    attempt = current_task_run.run_count
    if attempt > 1 and not cfg.resume and (point := resume_point(cfg)) is not None:
        cfg = cfg.model_copy(update={"resume": True})
        logger.warning("stage %d, attempt %d: resuming from %s", stage, attempt, point)
    logger.info("stage %d: %d rank(s), output %s", stage, cfg.nproc_per_node, cfg.output)
    metrics = launch_stage(cfg, on_line=logger.info, timeout_s=timeout_s)
    logger.info("stage %d finished at step %s; checkpoint %s", stage, metrics.get("step"), metrics.get("checkpoint"))
    return {"stage": stage, **metrics}


@task(name="pretrain-report", cache_policy=NO_CACHE, persist_result=False)
def report_pretrain(results: list[dict]) -> str:
    """Artifacts: the final metrics of every stage (table) and where the checkpoints are (markdown)."""
    rows = [{k: _short(r.get(k)) for k in METRIC_COLUMNS} for r in results]
    create_table_artifact(key="pretrain-metrics", table=rows, description="pre-training: final metrics per stage")
    lines = ["# Pre-training checkpoints", ""]
    for r in results:
        path = Path(r["checkpoint"]).resolve()
        lines.append(f"- stage {r['stage']}: [{path}]({path.as_uri()}) (step {r['step']}, epoch {r['epoch']})")
    lines += ["", "Load with `VimpacForPreTraining.from_pretrained(path)`; resume a stage with `--resume true`."]
    markdown = "\n".join(lines)
    create_markdown_artifact(key="pretrain-checkpoints", markdown=markdown, description="checkpoint location")
    return markdown


def _short(value: object) -> object:
    return round(value, 5) if isinstance(value, float) else value
