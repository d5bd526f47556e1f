"""Which pipeline stages already finished, read from their outputs (so a rerun skips them).

A stage counts as finished only when its last output exists AND it was written by the same
settings: a changed setting reruns the stage (and a stage's own resume logic decides whether it
continues a checkpoint or starts over). Each function returns what the stage would have returned,
or None when the stage must run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vimpac_core.storage import complete_dir
from vimpac_core.tokenizers.train import CHECKPOINT_DIR, TRAIN_CONFIG, TrainConfig

RUN_CONFIG, METRICS, EVAL_DIR = "run_config.json", "metrics.json", "eval"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _same(saved: Any, config: dict[str, Any]) -> bool:
    """Equal as JSON values (tuples and lists alike)."""
    return saved == json.loads(json.dumps(config))


def finished_tokenizer(out_dir: str | Path, train: TrainConfig) -> dict | None:
    """train-tokenizer's metrics when ``out_dir`` holds its report and a checkpoint at the last step
    of this same ``train`` config (the published ``tokenizer/`` folder comes with the report)."""
    out = Path(out_dir)
    metrics = _json(out / METRICS)
    checkpoint = complete_dir(out / CHECKPOINT_DIR)
    if not isinstance(metrics, dict) or "tokenizer_spec" not in metrics or checkpoint is None:
        return None
    saved = _json(checkpoint / TRAIN_CONFIG)
    final = (metrics.get("final_train") or {}).get("step")
    return metrics if _same(saved, train.model_dump(mode="json")) and final == train.steps else None


def finished_stage(output: str | Path, flat_config: dict[str, Any]) -> dict | None:
    """A training stage's metrics.json when it finished (the launcher writes metrics.json last and
    removes it when a stage starts) with this flat config, and its final checkpoint is there."""
    out = Path(output)
    metrics = _json(out / METRICS)
    if not isinstance(metrics, dict) or not _same(_json(out / RUN_CONFIG), flat_config):
        return None
    checkpoint = metrics.get("checkpoint")
    return metrics if checkpoint and complete_dir(checkpoint) is not None else None


def finished_finetune(output: str | Path, flat_config: dict[str, Any]) -> dict | None:
    """The fine-tune flow's result ({"train", "evaluations": {"final"}}) when training finished with this
    config and the final checkpoint's evaluation is written."""
    train = finished_stage(output, flat_config)
    final = _json(Path(output) / EVAL_DIR / METRICS)
    if train is None or not isinstance(final, dict) or final.get("checkpoint") != train.get("checkpoint"):
        return None
    return {"train": train, "evaluations": {"final": final}}
