"""Pre-training objective (mask-then-predict + contrastive) and its torchrun entry point.

Run under torchrun (one process per GPU, or gloo ranks on CPU)::

    torchrun --nproc_per_node 2 -m vimpac_core.train.pretrain --config run.json

where run.json is `PretrainConfig.to_flat()`. `launch.py` builds that command. Rank 0 writes
``<output>/metrics.json`` (final metrics, checkpoint path) and TensorBoard logs in
``<output>/tensorboard``. The loop itself is the shared trainer (trainer.py); a ``load`` start
point is stage 2: weights from that checkpoint (positional tables and Adam moments interpolated
when ``different_shape``), and with ``load_optimizer`` the optimizer state, LR schedule, step and
epoch counters carry on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from vimpac_core.data import PretrainClips
from vimpac_core.model import VimpacConfig, VimpacForPreTraining, block_mask, read_pretrained
from vimpac_core.model.pretrained import load_pretrained_weights
from vimpac_core.shards.reader import ShardIndex
from vimpac_core.train import trainer
from vimpac_core.train.config import PretrainConfig
from vimpac_core.train.distributed import DistEnv
from vimpac_core.train.knn import knn_monitor
from vimpac_core.train.worker import worker_main

METRIC_NAMES = ("loss", "mlm_loss", "nce_loss", "mask_accuracy")


def mask_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """Seed of the block-mask generator of one micro-batch (independent of resume and workers)."""
    return int(np.random.SeedSequence([seed, epoch, batch, rank]).generate_state(1)[0])


def to_model_batch(pairs: torch.Tensor) -> torch.Tensor:
    """[B, 2, T, H, W] pairs -> [2B, T, H, W]: first clips, then second clips (NCE pairing)."""
    return torch.cat([pairs[:, 0], pairs[:, 1]])


class PretrainObjective:
    """Block-masked codes of two clips per video -> MLM + NCE loss; kNN monitor after epochs."""

    name = "pretrain"
    metric_names = METRIC_NAMES
    clips_per_sample = 2

    def build_dataset(self, config: PretrainConfig, env: DistEnv) -> PretrainClips:
        """The pre-training pairs of this rank (index built from the shard folder's small columns)."""
        index = ShardIndex.build(config.data, split=config.split, storage_options=config.storage_options or None)
        m = config.model
        return PretrainClips(
            index, relevance_range=config.nce_relevance_range, clip_len=m.clip_len, frame_rate=config.frame_rate,
            grid_size=m.grid_size, pad_id=m.pad_id, batch_size=config.bs_per_gpu, views=config.views,
            seed=config.seed, rank=env.rank, world_size=env.world_size, cache_row_groups=config.cache_row_groups,
        )

    def build_model(self, config: PretrainConfig) -> VimpacForPreTraining:
        return VimpacForPreTraining(config.model)

    def load_start(self, model: torch.nn.Module, folder: Path, config: PretrainConfig, resuming: bool) -> VimpacConfig:
        src_config, _, weights = read_pretrained(folder)
        shape_change = not resuming and config.different_shape
        load_pretrained_weights(model, weights, src_config=src_config, different_shape=shape_change)
        return src_config

    def carries_optimizer(self, config: PretrainConfig) -> bool:
        return config.load_optimizer

    def loss(self, run: trainer.Run, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, state, device = run.config.model, run.state, run.env.device
        codes = to_model_batch(pairs)
        gen = torch.Generator().manual_seed(mask_seed(run.config.seed, state.epoch, state.batch, run.env.rank))
        masked, labels = block_mask(
            codes, run.config.mask_blocks, cfg.pad_id, cfg.mask_id, gen,
            mask_rand_replace=run.config.mask_rand_replace, vocab_size=cfg.vocab_size,
        )
        out = run.ddp(masked.to(device, non_blocking=True), mlm_labels=labels.to(device, non_blocking=True))
        values = [out.loss, out.mlm_loss, out.nce_loss, out.mask_accuracy]
        metrics = torch.stack([torch.as_tensor(v if v is not None else 0.0, device=device).float().detach()
                               for v in values])
        return out.loss, metrics

    def after_epoch(self, run: trainer.Run) -> dict:
        config = run.config
        if config.knn_data and run.state.epoch % config.knn_every == 0:
            return {"knn_top1": knn_monitor(run, config)}
        return {}


OBJECTIVE = PretrainObjective()


def setup_run(config: PretrainConfig, env: DistEnv) -> trainer.Run:
    """The trainer's set-up with the pre-training objective."""
    return trainer.setup_run(config, env, OBJECTIVE)


def train(config: PretrainConfig, env: DistEnv) -> dict:
    """Train one stage to its end epoch (or max_steps); returns the final metrics (rank 0's view)."""
    return trainer.train(config, env, OBJECTIVE)


def main(argv: list[str] | None = None) -> int:
    """torchrun entry: ``--config run.json`` (a PretrainConfig as flat JSON)."""
    return worker_main(argv, PretrainConfig, lambda config, env: train(config, env), "pretrain")


if __name__ == "__main__":
    sys.exit(main())
