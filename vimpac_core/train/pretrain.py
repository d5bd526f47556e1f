"""Pre-training entry point: set up a run (fresh, resumed, or stage 2 from stage 1) and train it.

Run under torchrun (one process per GPU, or gloo ranks on CPU)::

    torchrun --nproc_per_node 2 -m vimpac_core.train.pretrain --config run.json

where run.json is `PretrainConfig.to_flat()`. `launch.py` builds that command. Rank 0 writes
``<output>/metrics.json`` (final metrics, checkpoint path) and TensorBoard logs in
``<output>/tensorboard``.

Starting points, in order: ``resume`` and a checkpoint under ``<output>/checkpoints`` -> continue
exactly where it stopped; else ``load`` -> stage 2: weights from that checkpoint (positional
tables and Adam moments interpolated when ``different_shape``), and with ``load_optimizer`` the
optimizer state, LR schedule, step and epoch counters carry on; else a fresh run.

A rank that fails writes ``<output>/failure-rank<N>.json`` (see launch.record_failure) so the
launcher can tell a permanent error (bad config or data: never retried) from an interruption.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from vimpac_core.data import PretrainClips
from vimpac_core.model import VimpacForPreTraining, read_pretrained
from vimpac_core.model.pretrained import load_pretrained_weights, resize_optimizer_state
from vimpac_core.shards.reader import ShardIndex
from vimpac_core.train.checkpoint import (
    LoadedCheckpoint,
    TrainerState,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    load_optimizer_tensors,
    prune_checkpoints,
    restore_rng,
    save_checkpoint,
)
from vimpac_core.train.config import PretrainConfig
from vimpac_core.train.distributed import (
    DistEnv,
    barrier,
    cleanup,
    convert_sync_batchnorm,
    gather_objects,
    init_distributed,
)
from vimpac_core.train.knn import knn_monitor
from vimpac_core.train.launch import die_with_parent, record_failure
from vimpac_core.train.loop import Run, log_metrics, steps_per_epoch, train_epoch
from vimpac_core.train.optim import build_optimizer
from vimpac_core.train.schedule import Schedule


def build_dataset(config: PretrainConfig, env: DistEnv) -> PretrainClips:
    """The pre-training pairs of this rank (index built from the shard folder's small columns)."""
    index = ShardIndex.build(config.data, split=config.split, storage_options=config.storage_options or None)
    m = config.model
    return PretrainClips(
        index, relevance_range=config.nce_relevance_range, clip_len=m.clip_len, frame_rate=config.frame_rate,
        grid_size=m.grid_size, pad_id=m.pad_id, batch_size=config.bs_per_gpu, views=config.views,
        seed=config.seed, rank=env.rank, world_size=env.world_size, cache_row_groups=config.cache_row_groups,
    )


def _start_point(config: PretrainConfig) -> tuple[str, Path | None]:
    if config.resume:
        found = latest_checkpoint(config.checkpoint_dir)
        if found is not None:
            return "resume", found
    if config.load:
        return "load", Path(config.load)
    return "fresh", None


def setup_run(config: PretrainConfig, env: DistEnv) -> Run:
    """Model, optimizer, schedule, data and trainer state for this rank, from the start point."""
    if config.amp != "none" and env.device.type != "cuda":
        raise ValueError(f"amp: {config.amp!r} needs a GPU, this run is on {env.device}; set amp to 'none'")
    dataset = build_dataset(config, env)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = VimpacForPreTraining(config.model)
    kind, folder = _start_point(config)
    loaded: LoadedCheckpoint | None = None
    moments: dict[str, torch.Tensor] = {}
    if folder is not None:
        src_config, _, weights = read_pretrained(folder)
        shape_change = kind == "load" and config.different_shape
        load_pretrained_weights(model, weights, src_config=src_config, different_shape=shape_change)
        if kind == "resume" or config.load_optimizer:
            loaded = load_checkpoint(folder)
            moments = resize_optimizer_state(loaded.optimizer, src_config, config.model) if shape_change else loaded.optimizer
    model.to(env.device)
    if env.distributed:
        convert_sync_batchnorm(model, env.device)
    optimizer = build_optimizer(
        model, lr=config.lr, beta1=config.beta1, beta2=config.beta2, eps=config.eps, weight_decay=config.weight_decay
    )
    if moments:
        load_optimizer_tensors(optimizer, moments)
    ddp = model
    if env.distributed:
        ddp = DistributedDataParallel(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
    state, stage_start = TrainerState(), 0
    if loaded is not None:
        state = loaded.state
        if kind == "resume":
            stage_start = int(loaded.raw.get("stage_start_epoch", 0))
        else:  # stage 2: a new data pass from the next epoch boundary, counters carry on
            state.epoch, state.batch = state.epoch + (1 if state.batch else 0), 0
            stage_start = state.epoch  # after the bump: stage 2 runs all of its `epochs`
    run = Run(
        config=config, env=env, model=model, ddp=ddp, optimizer=optimizer, schedule=Schedule("constant", 0, 1),
        dataset=dataset, state=state, end_epoch=stage_start + config.epochs, stage_start_epoch=stage_start,
    )
    if loaded is not None and loaded.state.schedule:
        run.schedule = Schedule.from_state_dict(loaded.state.schedule)
    else:
        total = (config.schedule_epochs or config.epochs) * steps_per_epoch(run)
        run.schedule = Schedule.from_warm_up(config.lr_scheduler, config.warm_up, total)
    run.scaler = make_grad_scaler(config, env, loaded)
    if kind == "resume" and loaded is not None and env.rank < len(loaded.rng_per_rank):
        restore_rng(loaded.rng_per_rank[env.rank])
    else:
        torch.manual_seed(config.seed + env.rank)  # dropout differs across ranks, reproducibly
    return run


def make_grad_scaler(
    config: PretrainConfig, env: DistEnv, loaded: LoadedCheckpoint | None
) -> torch.amp.GradScaler | None:
    """fp16's loss scaler, carrying on from the checkpoint's scale and growth counter when it has one."""
    if config.amp != "fp16":
        return None
    scaler = torch.amp.GradScaler(env.device.type)
    if loaded is not None and loaded.grad_scaler:
        scaler.load_state_dict(loaded.grad_scaler)
    return scaler


def save(run: Run, name: str) -> Path | None:
    """Checkpoint on rank 0 with every rank's RNG; all ranks must call it (collective)."""
    rngs = gather_objects(capture_rng())
    path = None
    if run.env.is_main:
        run.state.schedule = run.schedule.state_dict()
        run.state.metrics = run.history[-1] if run.history else None
        extra = {"stage_start_epoch": run.stage_start_epoch, "config": run.config.to_flat()}
        scaler = run.scaler.state_dict() if run.scaler is not None else None
        path = save_checkpoint(
            Path(run.config.checkpoint_dir) / name, run.model, run.optimizer, run.state, rngs, extra, scaler
        )
        prune_checkpoints(run.config.checkpoint_dir, run.config.keep_checkpoints)
    barrier()
    return path


def train(config: PretrainConfig, env: DistEnv) -> dict:
    """Train one stage to its end epoch (or max_steps); returns the final metrics (rank 0's view)."""
    run = setup_run(config, env)
    if env.is_main:
        from torch.utils.tensorboard import SummaryWriter

        run.writer = SummaryWriter(log_dir=str(Path(config.output) / "tensorboard"))
    def on_step(r: Run, metrics: dict) -> None:
        log_metrics(r, metrics)
        ends_epoch = r.state.batch >= steps_per_epoch(r) * config.accumulation_steps()
        if config.save_every and r.state.step % config.save_every == 0 and not ends_epoch:
            save(r, f"step_{r.state.step:08d}")  # an epoch's last step is saved just after, as the next epoch's start

    def should_stop(r: Run) -> bool:
        return config.max_steps is not None and r.state.step >= config.max_steps

    knn = None
    while run.state.epoch < run.end_epoch and not should_stop(run):
        stopped = train_epoch(run, on_step=on_step, should_stop=should_stop)
        if not stopped:
            if config.knn_data and run.state.epoch % config.knn_every == 0:
                knn = knn_monitor(run, config)
            save(run, f"step_{run.state.step:08d}")
    final = save(run, "final")
    # A cheap fingerprint per rank: DDP keeps replicas identical, so every rank prints the same value.
    checksum = float(sum(p.detach().double().sum() for p in run.model.parameters()))
    print(f"[pretrain] rank {env.rank} final weights checksum {checksum:.10e}", flush=True)
    metrics = {
        **(run.history[-1] if run.history else {}),
        "step": run.state.step, "epoch": run.state.epoch, "batch_in_epoch": run.state.batch,
        "total_steps": run.schedule.total_steps, "world_size": env.world_size,
        "checkpoint": str(final) if final else str(Path(config.checkpoint_dir) / "final"),
    }
    if knn is not None:
        metrics["knn_top1"] = knn
    if env.is_main:
        Path(config.output, "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        if run.writer is not None:
            run.writer.close()
    return metrics


def main(argv: list[str] | None = None) -> int:
    """torchrun entry: ``--config run.json`` (a PretrainConfig as flat JSON)."""
    parser = argparse.ArgumentParser(description="VIMPAC pre-training worker (run it through torchrun)")
    parser.add_argument("--config", required=True, help="JSON file of PretrainConfig.to_flat()")
    args = parser.parse_args(argv)
    die_with_parent()  # torchrun killed (its launcher gone, or cancelled): this rank goes too
    config = PretrainConfig.from_flat(json.loads(Path(args.config).read_text()))
    rank = int(os.environ.get("RANK", 0))
    try:
        env = init_distributed(config.device)
        metrics = train(config, env)
    except BaseException as err:
        record_failure(config.output, rank, err)
        raise
    finally:
        cleanup()
    if env.is_main:
        print("[pretrain] done " + json.dumps({k: metrics[k] for k in ("step", "epoch", "checkpoint")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
