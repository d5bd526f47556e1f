"""Fine-tuning flow: train (torchrun) then evaluate the final checkpoint at every clip count.

`finetune-train` runs on `gpu`-tagged torchrun and, like a pre-training stage, is retried from its
latest checkpoint after a preemption; `evaluate` then tests the final checkpoint at
``num_test_clips`` and each of ``last_test_clips`` (and, with a validation set, the best epoch's
model too). The report task leaves a table and a markdown artifact with the confusion matrix.
The `evaluate` flow tests any fine-tuned checkpoint alone. The flows only orchestrate; the work is
in vimpac_core.train.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from vimpac_core.train.finetune import BEST_DIR
from vimpac_core.train.finetune_config import EvaluateConfig, FinetuneConfig
from vimpac_tasks.train import evaluate_checkpoint, finetune_train, report_evaluation


@flow(name="finetune")
def finetune(config: dict, timeout_s: float | None = None) -> dict:
    """Fine-tune (flat FinetuneConfig) and evaluate; returns {"train": metrics, "evaluations": {...}}."""
    trained = finetune_train(config, timeout_s)
    cfg = FinetuneConfig.from_flat(config)
    counts = cfg.final_clip_counts()
    evaluations = {"final": evaluate_checkpoint(
        cfg.eval_config(trained["checkpoint"], str(Path(cfg.output) / "eval"), counts).to_flat(), timeout_s)}
    best = Path(cfg.output) / BEST_DIR
    if cfg.val_data and best.is_dir():  # chosen by validation score; its test score is reported only
        evaluations["best"] = evaluate_checkpoint.with_options(name="evaluate-best")(
            cfg.eval_config(str(best), str(Path(cfg.output) / "eval-best"), counts).to_flat(), timeout_s)
    report_evaluation(trained, evaluations)
    return {"train": trained, "evaluations": evaluations}


@flow(name="evaluate")
def evaluate(config: dict, timeout_s: float | None = None) -> dict:
    """Evaluate one checkpoint (flat EvaluateConfig); returns its summary metrics."""
    summary = evaluate_checkpoint(config, timeout_s)
    report_evaluation(None, {"checkpoint": summary}, key="evaluate")
    return summary


def run_finetune(config: FinetuneConfig, timeout_s: float | None = None) -> dict:
    """What `vimpac finetune` calls: a validated config in, training and evaluation metrics out."""
    return finetune(config=config.to_flat(), timeout_s=timeout_s)


def run_evaluate(config: EvaluateConfig, timeout_s: float | None = None) -> dict:
    """What `vimpac evaluate` calls."""
    return evaluate(config=config.to_flat(), timeout_s=timeout_s)
