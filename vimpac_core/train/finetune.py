"""Fine-tuning objective (classification on CLS) and its torchrun entry point.

Run under torchrun (launch.py builds the command)::

    torchrun --nproc_per_node 2 -m vimpac_core.train.finetune --config run.json

where run.json is a resolved `FinetuneConfig.to_flat()` (resolve.resolve_finetune: architecture
and vocabulary from the checkpoint, num_labels from the data). The loop is the shared trainer
(trainer.py). Per sample: one random view among the video's ``train_views``, one random clip
(FinetuneClips); loss: cross-entropy (``label_smoothing``). A ``load`` start point gives the
backbone only (pre-training heads dropped, ``cls_fc`` zero-initialised; a fine-tuned checkpoint
gives its classifier too); the optimizer and schedule start fresh.

Every ``eval_per_epochs`` epochs and after the last one the model is evaluated (evaluate.py) on
the validation set, when there is one, and on the test set. The best epoch by validation top-1 is
kept as a model folder ``<output>/best`` (with ``best.json``); the test score is logged and
reported, never used to choose.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from vimpac_core.data import FinetuneClips, select_videos
from vimpac_core.errors import ConfigError
from vimpac_core.model import VimpacConfig, VimpacForClassification, read_pretrained
from vimpac_core.model.pretrained import load_pretrained_weights
from vimpac_core.shards.reader import ShardIndex
from vimpac_core.storage import atomic_write_bytes
from vimpac_core.train import trainer
from vimpac_core.train.distributed import DistEnv
from vimpac_core.train.evaluate import TestSet, evaluate_model
from vimpac_core.train.finetune_config import FinetuneConfig
from vimpac_core.train.worker import worker_main

log = logging.getLogger(__name__)
BEST_DIR, BEST_FILE = "best", "best.json"


def labelled(index: ShardIndex) -> ShardIndex:
    """The videos that carry a label (fine-tuning trains on those only)."""
    keep = [v for v in index.videos if v.label is not None and v.label >= 0]
    if not keep:
        raise ConfigError(f"data: no video of {index.url!r} has a label; fine-tuning needs labelled shards")
    return ShardIndex(index.url, index.files, keep, index.storage_options)


class FinetuneObjective:
    """Cross-entropy on the classifier's logits; evaluation (and the best epoch) after epochs."""

    name = "finetune"
    metric_names = ("loss", "accuracy")
    clips_per_sample = 1

    def __init__(self) -> None:
        self._indexes: dict[tuple, tuple] = {}  # test / validation videos, built once per process
        self.train_left_out = 0  # training videos with none of train_views

    def build_dataset(self, config: FinetuneConfig, env: DistEnv) -> FinetuneClips:
        index = ShardIndex.build(config.data, split=config.split, storage_options=config.storage_options or None)
        index, left_out = select_videos(labelled(index), config.train_views, need_all=False)
        self.train_left_out = len(left_out)
        if left_out and env.is_main:
            print(f"[finetune] {len(left_out)} training video(s) have none of {config.train_views}: left out", flush=True)
        m = config.model
        return FinetuneClips(
            index, clip_len=m.clip_len, frame_rate=config.frame_rate, grid_size=m.grid_size, pad_id=m.pad_id,
            batch_size=config.bs_per_gpu, views=config.train_views, seed=config.seed, rank=env.rank,
            world_size=env.world_size, cache_row_groups=config.cache_row_groups,
        )

    def build_model(self, config: FinetuneConfig) -> VimpacForClassification:
        return VimpacForClassification(config.model)

    def load_start(self, model: torch.nn.Module, folder: Path, config: FinetuneConfig, resuming: bool) -> VimpacConfig:
        src_config, _, weights = read_pretrained(folder)
        shape_change = not resuming and config.different_shape
        load_pretrained_weights(model, weights, src_config=src_config, different_shape=shape_change)
        return src_config

    def carries_optimizer(self, config: FinetuneConfig) -> bool:
        return False  # a fine-tuning run starts its optimizer and schedule afresh

    def loss(self, run: trainer.Run, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        clips, labels = batch
        device = run.env.device
        labels = labels.to(device, non_blocking=True)
        logits = run.ddp(clips.to(device, non_blocking=True)).logits
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=run.config.label_smoothing)
        accuracy = (logits.detach().argmax(1) == labels).float().mean()
        return loss, torch.stack([loss.detach().float(), accuracy])

    def after_epoch(self, run: trainer.Run) -> dict:
        config: FinetuneConfig = run.config
        epoch = run.state.epoch  # epochs completed
        if epoch % config.eval_per_epochs and epoch != run.end_epoch:
            return {}
        out = {"eval_epoch": epoch, "train_left_out": self.train_left_out}
        if config.val_data:
            val = self._evaluate(run, config.val_data, config.val_split, "val")
            out["val_top1"] = val["top1"]
            best = run.extra.get("best_val_top1")
            if best is None or val["top1"] > best:
                out.update(best_val_top1=val["top1"], best_epoch=epoch)
                self._keep_best(run, epoch, val)
        test = self._evaluate(run, config.test_url, config.test_split, "test")
        out.update({f"test_{k}": test[k] for k in ("top1", "top5", "mean_class_accuracy", "loss")})
        return out

    def _evaluate(self, run: trainer.Run, data: str, split: str | None, tag: str) -> dict:
        config: FinetuneConfig = run.config
        test = TestSet(data, split, config.test_views, config.frame_rate, config.test_clip_position,
                       config.bs_per_gpu, 0, config.storage_options, config.cache_row_groups)
        key = (data, split)
        if key not in self._indexes:
            self._indexes[key] = test.index()
        metrics = evaluate_model(run.model, test, run.env, config.num_test_clips, self._indexes[key]).metrics
        if run.writer is not None:
            for name in ("top1", "top5", "mean_class_accuracy", "loss"):
                run.writer.add_scalar(f"{tag}/{name}", metrics[name], run.state.step)
            run.writer.flush()
        if run.env.is_main:
            print(f"[finetune] epoch {run.state.epoch} {tag} top1 {metrics['top1']:.4f} top5 {metrics['top5']:.4f} "
                  f"mean-class {metrics['mean_class_accuracy']:.4f} ({metrics['videos']} videos)", flush=True)
        return metrics

    def _keep_best(self, run: trainer.Run, epoch: int, val: dict) -> None:
        if not run.env.is_main:
            return
        folder = run.model.save_pretrained(Path(run.config.output) / BEST_DIR)
        record = {"epoch": epoch, "step": run.state.step, "val_top1": val["top1"], "folder": str(folder)}
        atomic_write_bytes(str(Path(run.config.output) / BEST_FILE), (json.dumps(record, indent=1) + "\n").encode())


OBJECTIVE = FinetuneObjective()


def setup_run(config: FinetuneConfig, env: DistEnv) -> trainer.Run:
    return trainer.setup_run(config, env, OBJECTIVE)


def train(config: FinetuneConfig, env: DistEnv) -> dict:
    """Fine-tune to the end epoch (or max_steps); returns the final metrics (rank 0's view)."""
    return trainer.train(config, env, OBJECTIVE)


def main(argv: list[str] | None = None) -> int:
    """torchrun entry: ``--config run.json`` (a resolved FinetuneConfig as flat JSON)."""
    return worker_main(argv, FinetuneConfig, train, "finetune")


if __name__ == "__main__":
    sys.exit(main())
