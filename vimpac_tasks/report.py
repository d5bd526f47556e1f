"""Prefect task drawing the pipeline's pictures (library code in vimpac_core.pictures)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from vimpac_core.pictures import first_clip, masked_prediction_picture, training_curves
from vimpac_core.pipeline_config import PipelineConfig
from vimpac_core.tokenizers.base import Decodable
from vimpac_core.tokenizers.runtime import load_tokenizer

PRETRAIN_TAGS = ("train/loss", "train/mlm_loss", "train/nce_loss", "train/mask_accuracy", "train/lr", "knn/top1")


@task(name="pipeline-pictures", cache_policy=NO_CACHE, persist_result=False)
def draw_pipeline_pictures(config: PipelineConfig, summary: dict) -> dict[str, str]:
    """Tokenizer reconstructions, the mask-then-predict picture, training curves and confusion matrices
    of a finished pipeline, as {name: path} (pictures that cannot be made are logged and left out)."""
    logger = get_run_logger()
    reports = Path(config.out_path("reports"))
    pictures: dict[str, str] = {}
    recon = Path(config.tokenizer_dir) / "reconstructions.png"
    if config.tokenizer is None and recon.is_file():
        pictures["tokenizer reconstructions (top: frames, bottom: decoded codes)"] = str(recon)
    stages = config.pretrain_stages()
    last = stages[-1]
    spec = summary["tokenizer_spec"]
    tokenizer = load_tokenizer(spec)
    if isinstance(tokenizer, Decodable) and getattr(tokenizer, "can_decode", True):
        m = last.model
        clip = first_clip(last.data, m.clip_len, last.frame_rate, m.pad_id)
        path = masked_prediction_picture(Path(last.checkpoint_dir) / "final", spec, clip, reports / "masked_prediction.png",
                                         mask_blocks=max(1, last.mask_blocks), seed=last.seed)
        pictures["mask-then-predict (rows: tokens decoded, block mask, predicted tokens decoded)"] = str(path)
    else:
        logger.info("tokenizer %s cannot decode: no mask-then-predict picture", spec)
    curves = training_curves({f"stage {i}": Path(s.output) / "tensorboard" for i, s in enumerate(stages, start=1)},
                             reports / "pretrain_curves.png", PRETRAIN_TAGS)
    if curves is not None:
        pictures["pre-training curves"] = str(curves)
    for task_cfg in config.finetune:
        runs = {v: Path(config.task_path(task_cfg, d)) / "tensorboard"
                for v, d in (("pretrained", "finetune"), ("scratch", "scratch"))}
        curves = training_curves(runs, reports / f"{task_cfg.name}_finetune_curves.png")
        if curves is not None:
            pictures[f"{task_cfg.name}: fine-tuning curves"] = str(curves)
        for variant, result in summary["finetune"].get(task_cfg.name, {}).items():
            if isinstance(result, dict) and "evaluation" in result:
                for count, clip_result in result["evaluation"]["clips"].items():
                    if clip_result.get("confusion"):
                        pictures[f"{task_cfg.name}: confusion matrix ({variant}, {count} clip(s))"] = clip_result["confusion"]
    return pictures
