"""Prefect tasks of training: a pre-training stage, fine-tuning and evaluation, each running torchrun.

Thin wrappers over vimpac_core.train.launch: the output of every rank streams into the run
logger line by line; a timeout or a cancellation kills the whole process group (SIGTERM to the
flow-run process included, see launch.py). Tagged ``gpu`` so a concurrency limit on that tag
keeps two stages off one GPU machine.

Retries: a stage that was interrupted (a rank killed by preemption, a timeout) is retried, up to
``RETRIES`` times, only when it left a checkpoint written with this same config; the retry resumes
from it. Config errors, permanent rank errors and cancellations are never retried.
"""

from __future__ import annotations

import base64
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run as current_task_run

from vimpac_core import interrupts
from vimpac_core.k8s import K8sJobConfig, run_stage_on_cluster
from vimpac_core.train.config import PretrainConfig, TrainConfigBase
from vimpac_core.train.finetune_config import EvaluateConfig, FinetuneConfig
from vimpac_core.train.launch import launch_stage, resume_point
from vimpac_core.train.preflight import check_pretrain
from vimpac_core.train.resolve import resolve_evaluate, resolve_finetune
from vimpac_tasks.retry import retry_from_checkpoint, retry_transient

METRIC_COLUMNS = ("stage", "step", "epoch", "loss", "mlm_loss", "nce_loss", "mask_accuracy", "lr", "clips_per_s",
                  "knn_top1", "checkpoint")
RETRIES, RETRY_DELAY_S = 2, 30


def launch_resuming(cfg: TrainConfigBase, label: str, timeout_s: float | None) -> dict:
    """Launch ``cfg``; a retry (attempt > 1) resumes from the checkpoint an interrupted attempt left."""
    logger = get_run_logger()
    attempt = current_task_run.run_count
    if attempt > 1 and not cfg.resume and (point := resume_point(cfg)) is not None:
        cfg = cfg.model_copy(update={"resume": True})
        logger.warning("%s, attempt %d: resuming from %s", label, attempt, point)
    logger.info("%s: %d rank(s), output %s", label, cfg.nproc_per_node, cfg.output)
    # The user's Ctrl-C / SIGTERM to the command (vimpac_core.interrupts) cancels the run: torchrun
    # and its ranks are stopped; the checkpoints written so far stay.
    return launch_stage(cfg, on_line=logger.info, timeout_s=timeout_s, cancel=interrupts.stop_event())


@task(name="pretrain-stage", tags=["gpu"], cache_policy=NO_CACHE, persist_result=False, retries=RETRIES,
      retry_delay_seconds=RETRY_DELAY_S, retry_condition_fn=retry_from_checkpoint)
def pretrain_stage(config: dict, stage: int, timeout_s: float | None = None) -> dict:
    """Run one stage (flat PretrainConfig) under torchrun; returns its final metrics."""
    logger = get_run_logger()
    cfg = PretrainConfig.from_flat(config)
    check_pretrain(cfg)  # what can be known before training: data, token grid, vocabulary
    metrics = launch_resuming(cfg, f"stage {stage}", timeout_s)
    logger.info("stage %d finished at step %s; checkpoint %s", stage, metrics.get("step"), metrics.get("checkpoint"))
    return {"stage": stage, **metrics}


@task(name="finetune-train", tags=["gpu"], cache_policy=NO_CACHE, persist_result=False, retries=RETRIES,
      retry_delay_seconds=RETRY_DELAY_S, retry_condition_fn=retry_from_checkpoint)
def finetune_train(config: dict, timeout_s: float | None = None) -> dict:
    """Fine-tune (flat FinetuneConfig, resolved against its checkpoint and data) under torchrun."""
    cfg = resolve_finetune(FinetuneConfig.from_flat(config))
    metrics = launch_resuming(cfg, "fine-tuning", timeout_s)
    get_run_logger().info("fine-tuning finished at epoch %s; checkpoint %s", metrics.get("epoch"), metrics.get("checkpoint"))
    return metrics


@task(name="evaluate", tags=["gpu"], cache_policy=NO_CACHE, persist_result=False, retries=RETRIES,
      retry_delay_seconds=RETRY_DELAY_S, retry_condition_fn=retry_transient)
def evaluate_checkpoint(config: dict, timeout_s: float | None = None) -> dict:
    """Multi-view evaluation (flat EvaluateConfig) of a fine-tuned checkpoint under torchrun."""
    cfg = EvaluateConfig.from_flat(config)
    resolve_evaluate(cfg)
    get_run_logger().info("evaluating %s on %s: %s clip(s)", cfg.checkpoint, cfg.data, cfg.num_test_clips)
    return launch_stage(cfg, on_line=get_run_logger().info, timeout_s=timeout_s, cancel=interrupts.stop_event())


@task(name="pretrain-stage-kubernetes", cache_policy=NO_CACHE, persist_result=False)
def pretrain_stage_on_kubernetes(config: dict, stage: int, job: dict, timeout_s: float | None = None) -> dict:
    """Run one stage as a PyTorchJob (``job``: K8sJobConfig fields) on the current kubeconfig's cluster
    and follow it to its end; the operator restarts lost pods, which resume from the shared checkpoints."""
    logger = get_run_logger()
    status = run_stage_on_cluster(PretrainConfig.from_flat(config), K8sJobConfig(**job), timeout_s=timeout_s,
                                  on_status=logger.info)
    return {"stage": stage, "job": job["name"], "status": status}


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


EVAL_COLUMNS = ("checkpoint_kind", "clips", "views", "top1", "top5", "mean_class_accuracy", "loss", "videos", "left_out")


@task(name="finetune-report", cache_policy=NO_CACHE, persist_result=False)
def report_evaluation(trained: dict | None, evaluations: dict[str, dict], key: str = "finetune") -> str:
    """Artifacts: a table of every evaluation (checkpoint x clip count) and a markdown report with
    the confusion matrix of the first one embedded (a data: URI; the PNG file is linked too)."""
    rows = []
    for kind, summary in evaluations.items():
        for clips, m in summary["clips"].items():
            rows.append({"checkpoint_kind": kind, "clips": int(clips), **{k: _short(m.get(k)) for k in EVAL_COLUMNS[2:]}})
    create_table_artifact(key=f"{key}-metrics", table=rows, description="evaluation: top-1 (release), top-5, mean per-class")
    lines = [f"# {key.capitalize()} evaluation", ""]
    if trained:
        lines.append(f"Trained to epoch {trained.get('epoch')} (step {trained.get('step')}): `{trained.get('checkpoint')}`")
        if trained.get("best_epoch") is not None:
            lines.append(f"Best epoch by validation top-1: {trained['best_epoch']} ({_short(trained.get('best_val_top1'))})")
        lines.append("")
    for kind, summary in evaluations.items():
        first = next(iter(summary["clips"].values()))
        png = Path(first["confusion"]).resolve()
        encoded = base64.b64encode(png.read_bytes()).decode()
        lines += [f"## {kind}: `{summary['checkpoint']}`", "",
                  f"top-1 {first['top1']:.4f}, top-5 {first['top5']:.4f}, mean per-class {first['mean_class_accuracy']:.4f} "
                  f"over {first['videos']} videos ({first['num_test_clips']} clip(s) x {first['views']} view(s))", "",
                  f"![confusion matrix](data:image/png;base64,{encoded})", "",
                  f"[confusion.png]({png.as_uri()}) · [predictions.parquet]({Path(first['predictions']).resolve().as_uri()})", ""]
    markdown = "\n".join(lines)
    create_markdown_artifact(key=f"{key}-report", markdown=markdown, description="evaluation report")
    return markdown
