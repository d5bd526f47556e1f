"""Multi-view evaluation of a classifier, during fine-tuning and as its own torchrun entry point.

Per video: ``views`` x ``num_test_clips`` clips at the release's starts (`test_clip_starts`), a
softmax per clip, averaged (the release's aggregation); metrics.py turns the averaged
probabilities into top-1 / top-5 / mean per-class accuracy. Videos that lack one of the test
views are left out and counted (``left_out``), never a crash. Run alone::

    torchrun --nproc_per_node 2 -m vimpac_core.train.evaluate --config eval.json

(`EvaluateConfig.to_flat()`), writing ``<output>/clips<K>/{predictions.parquet, metrics.json,
confusion.png}`` per clip count, ``<output>/metrics.json`` (every count) and TensorBoard scalars
``<tag>/top1@<K>`` in ``<output>/tensorboard``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from vimpac_core.data import MultiViewTestClips, select_videos
from vimpac_core.model import VimpacConfig, VimpacForClassification
from vimpac_core.shards.reader import ShardIndex
from vimpac_core.storage import atomic_write_bytes
from vimpac_core.train.distributed import DistEnv
from vimpac_core.train.finetune_config import EvaluateConfig
from vimpac_core.train.metrics import classification_metrics, write_evaluation
from vimpac_core.train.predict import Predictions, mean_softmax, predict
from vimpac_core.train.worker import worker_main


@dataclass
class TestSet:
    """Where the test videos come from and how clips are cut (the model decides clip shape)."""

    data: str
    split: str | None
    views: list[str] | None
    frame_rate: int
    clip_position: str
    bs_per_gpu: int
    num_workers: int = 0
    storage_options: dict | None = None
    cache_row_groups: int = 4

    def index(self) -> tuple[ShardIndex, list[str]]:
        """The test videos that have every test view, and the ids left out."""
        full = ShardIndex.build(self.data, split=self.split, storage_options=self.storage_options or None)
        return select_videos(full, self.views, need_all=True)


@dataclass
class Evaluation:
    metrics: dict
    predictions: Predictions
    video_ids: list[str]


def videos_per_batch(bs_per_gpu: int, clips_per_video: int) -> int:
    """The release's evaluation batch: 1.5 x bs_per_gpu clips' worth of videos, at least one."""
    return max(int(bs_per_gpu * 1.5) // clips_per_video, 1)


@torch.no_grad()
def evaluate_model(model: VimpacForClassification, test: TestSet, env: DistEnv, num_test_clips: int,
                   index: tuple[ShardIndex, list[str]] | None = None) -> Evaluation:
    """Evaluate ``model`` (in fp32, eval mode; training mode restored after) on ``test`` at
    ``num_test_clips`` clips per view; the same result on every rank (collective)."""
    kept, left_out = index or test.index()
    m: VimpacConfig = model.config
    dataset = MultiViewTestClips(
        kept, num_test_clips=num_test_clips, clip_position=test.clip_position, views=test.views,
        clip_len=m.clip_len, frame_rate=test.frame_rate, grid_size=m.grid_size, pad_id=m.pad_id,
        batch_size=test.bs_per_gpu, rank=env.rank, world_size=env.world_size, cache_row_groups=test.cache_row_groups,
    )
    clips = len(dataset.views[0]) * num_test_clips
    was_training = model.training
    model.eval()
    try:
        found = predict(lambda codes: model(codes).logits, dataset, device=env.device,
                        videos_per_batch=videos_per_batch(test.bs_per_gpu, clips), reduce=mean_softmax,
                        num_workers=test.num_workers)
    finally:
        model.train(was_training)
    metrics = classification_metrics(found.outputs, found.labels)
    labelled = found.labels >= 0
    metrics.update(
        loss=float(found.clip_loss[labelled].mean()) if bool(labelled.any()) else 0.0,
        num_test_clips=num_test_clips, views=len(dataset.views[0]), left_out=len(left_out),
    )
    ids = [kept.videos[int(p)].video_id for p in found.positions]
    return Evaluation(metrics, found, ids)


def make_test_set(config: EvaluateConfig) -> TestSet:
    return TestSet(config.data, config.split, config.views, config.frame_rate, config.clip_position,
                   config.bs_per_gpu, config.num_workers, config.storage_options, config.cache_row_groups)


def evaluate(config: EvaluateConfig, env: DistEnv) -> dict:
    """Every clip count of ``config`` on its checkpoint; rank 0 writes the outputs. -> summary metrics."""
    model = VimpacForClassification.from_pretrained(config.checkpoint).to(env.device)
    test = make_test_set(config)
    index = test.index()
    summary: dict = {"checkpoint": config.checkpoint, "data": config.data, "split": config.split,
                     "dataset": config.dataset, "clips": {}}
    writer = None
    if env.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(Path(config.output) / "tensorboard"))
    for count in config.num_test_clips:
        result = evaluate_model(model, test, env, count, index)
        if env.is_main:
            files = write_evaluation(Path(config.output) / f"clips{count}", result.video_ids, result.predictions.labels,
                                     result.predictions.outputs, result.predictions.clip_loss, result.metrics)
            summary["clips"][str(count)] = {**result.metrics, **files}
            for key in ("top1", "top5", "mean_class_accuracy"):
                writer.add_scalar(f"{config.tag}/{key}@{count}", result.metrics[key], count)
            m = result.metrics
            print(f"[evaluate] {config.tag} {count} clip(s) x {m['views']} view(s): top1 {m['top1']:.4f} "
                  f"top5 {m['top5']:.4f} mean-class {m['mean_class_accuracy']:.4f} ({m['videos']} videos)", flush=True)
    if env.is_main:
        first = summary["clips"][str(config.num_test_clips[0])]
        summary.update({k: first[k] for k in ("top1", "top5", "mean_class_accuracy", "videos")})
        writer.close()
        atomic_write_bytes(str(Path(config.output, "metrics.json")), (json.dumps(summary, indent=1) + "\n").encode())
    return summary


def main(argv: list[str] | None = None) -> int:
    """torchrun entry: ``--config eval.json`` (an EvaluateConfig as flat JSON)."""
    return worker_main(argv, EvaluateConfig, evaluate, "evaluate")


if __name__ == "__main__":
    sys.exit(main())
