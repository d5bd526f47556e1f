"""The task-agnostic trainer: set-up, DDP, AMP, accumulation, clipping, schedule, checkpoints, logging.

An `Objective` (pre-training in pretrain.py, fine-tuning in finetune.py) says what is trained: its
model, its dataset, how a checkpoint seeds the model, the loss of one micro-batch and what runs
after an epoch (kNN monitor, evaluation). Everything else is here, once:

Per optimizer step, on every rank: ``accumulation`` micro-batches of ``bs_per_gpu`` videos run
forward under autocast (`autocast`) and backward with DDP's gradient sync only on the last one;
then gradients are clipped, the schedule sets the lr, and AdamW steps. Metrics are averaged over
ranks every ``log_every`` steps and written to TensorBoard on rank 0. Checkpoints every
``save_every`` steps and at the end of each epoch; everything that decides the next step (weights,
moments, RNG, data position) is in them, so a resumed run continues bit-for-bit on CPU. SIGTERM
(preemption) stops at the next optimizer step with a checkpoint of it (preemption.py).

Start points, in order: ``resume`` and a checkpoint under ``<output>/checkpoints`` -> continue
exactly where it stopped; else ``load`` -> weights from that checkpoint (the objective's loading
rules), and when the objective carries the optimizer over (pre-training stage 2) its state,
schedule and counters too; else a fresh run.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from vimpac_core.model.pretrained import resize_optimizer_state
from vimpac_core.optim_state import load_optimizer_tensors
from vimpac_core.precision import check_bf16
from vimpac_core.storage import atomic_write_bytes
from vimpac_core.train.checkpoint import (
    LoadedCheckpoint,
    TrainerState,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng,
    save_checkpoint,
)
from vimpac_core.train.config import TrainConfigBase
from vimpac_core.train.distributed import (
    DistEnv,
    all_reduce_mean,
    barrier,
    convert_sync_batchnorm,
    gather_objects,
)
from vimpac_core.train.objective import Objective, Run
from vimpac_core.train.optim import build_optimizer
from vimpac_core.train.preemption import Preempted, PreemptionWatch, defer_sigterm, watch_sigterm
from vimpac_core.train.schedule import Schedule

COMMON_METRICS = ("lr", "grad_norm", "clips_per_s")


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The one place mixed precision is chosen: ``amp`` none / bf16 / fp16 on ``device``; the same
    ``torch.autocast`` on CPU and GPU (weights, gradients and AdamW state stay fp32)."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def check_amp(amp: str, device: torch.device) -> None:
    """Raise (permanent) when the precision cannot run on this rank's device: fp16 and its loss
    scaler need a GPU; bf16 needs native bf16 (a GPU of compute capability 8.0+, or a CPU with
    AVX-512 / AMX / Arm BF16; ConfigError, see ``vimpac_core.precision``)."""
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp: 'fp16' (with its loss scaler) needs a GPU, this run is on {device}; "
                         "use amp 'bf16' or 'none'")
    if amp == "bf16":
        check_bf16(device, "amp", "amp 'none'")


def make_grad_scaler(amp: str, device: torch.device, loaded: LoadedCheckpoint | None) -> torch.amp.GradScaler | None:
    """fp16's loss scaler, carrying on from the checkpoint's scale and growth counter when it has one."""
    if amp != "fp16":
        return None
    scaler = torch.amp.GradScaler(device.type)
    if loaded is not None and loaded.grad_scaler:
        scaler.load_state_dict(loaded.grad_scaler)
    return scaler


def start_point(config: TrainConfigBase) -> tuple[str, Path | None]:
    """("resume", latest checkpoint) | ("load", config.load) | ("fresh", None)."""
    if config.resume:
        found = latest_checkpoint(config.checkpoint_dir)
        if found is not None:
            return "resume", found
    if config.load:
        return "load", Path(config.load)
    return "fresh", None


def setup_run(config: TrainConfigBase, env: DistEnv, objective: Objective) -> Run:
    """Model, optimizer, schedule, data and trainer state for this rank, from the start point."""
    check_amp(config.amp, env.device)
    dataset = objective.build_dataset(config, env)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = objective.build_model(config)
    kind, folder = start_point(config)
    loaded: LoadedCheckpoint | None = None
    moments: dict[str, torch.Tensor] = {}
    if folder is not None:
        src_config = objective.load_start(model, folder, config, resuming=kind == "resume")
        if kind == "resume" or objective.carries_optimizer(config):
            loaded = load_checkpoint(folder)
            shape_change = kind == "load" and config.different_shape
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
        else:  # a next stage: a new data pass from the next epoch boundary, counters carry on
            state.epoch, state.batch = state.epoch + (1 if state.batch else 0), 0
            stage_start = state.epoch  # after the bump: the stage runs all of its `epochs`
    run = Run(
        config=config, env=env, objective=objective, model=model, ddp=ddp, optimizer=optimizer,
        schedule=Schedule("constant", 0, 1), dataset=dataset, state=state,
        end_epoch=stage_start + config.epochs, stage_start_epoch=stage_start, start_step=state.step,
    )
    if loaded is not None and loaded.state.schedule:
        run.schedule = Schedule.from_state_dict(loaded.state.schedule)
    else:
        total = (getattr(config, "schedule_epochs", None) or config.epochs) * steps_per_epoch(run)
        run.schedule = Schedule.from_warm_up(config.lr_scheduler, config.warm_up, total)
    run.scaler = make_grad_scaler(config.amp, env.device, loaded)
    if kind == "resume" and loaded is not None:
        run.extra = dict(loaded.raw.get("extra_metrics") or {})
        if env.rank < len(loaded.rng_per_rank):
            restore_rng(loaded.rng_per_rank[env.rank])
            return run
    torch.manual_seed(config.seed + env.rank)  # dropout differs across ranks, reproducibly
    return run


def make_loader(run: Run) -> DataLoader:
    """DataLoader over this rank's part of the epoch, from the current data position.

    Its own generator keeps worker seeding off the global RNG, which drives dropout.
    """
    config = run.config
    run.dataset.set_epoch(run.state.epoch, start_batch=run.state.batch)
    return DataLoader(
        run.dataset,
        batch_size=config.bs_per_gpu,
        num_workers=config.num_workers,
        pin_memory=run.env.device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),
        persistent_workers=False,
        worker_init_fn=defer_sigterm if config.num_workers else None,
    )


def micro_step(run: Run, batch: Any, sync: bool) -> torch.Tensor:
    """Forward + backward of one micro-batch; returns the objective's detached metric vector."""
    no_sync = getattr(run.ddp, "no_sync", None)
    context = contextlib.nullcontext() if sync or no_sync is None else no_sync()
    with context:
        with autocast(run.config.amp, run.env.device):
            loss, metrics = run.objective.loss(run, batch)
        loss = loss / run.config.accumulation_steps()
        (run.scaler.scale(loss) if run.scaler else loss).backward()
    return metrics


def optimizer_step(run: Run) -> tuple[float, float]:
    """Clip, set the lr of this step, step AdamW, zero grads. Returns (lr, grad-norm before clipping)."""
    if run.scaler:
        run.scaler.unscale_(run.optimizer)
    clip = run.config.grad_clip if run.config.grad_clip > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    lr = run.schedule.apply(run.optimizer, run.state.step, run.config.lr)
    if run.scaler:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.state.step += 1
    return lr, float(norm)


def steps_per_epoch(run: Run) -> int:
    """Optimizer steps per epoch: full accumulation groups of this rank's batches."""
    return run.dataset.num_batches() // run.config.accumulation_steps()


def batch_videos(batch: Any) -> int:
    """Videos in a batch (a tensor, or a tuple whose first item is the clips)."""
    return int((batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0])


def train_epoch(run: Run, *, on_step: Callable[[Run, dict], None], should_stop: Callable[[Run], bool]) -> bool:
    """Run the rest of the current epoch from the saved data position; True when stopped early.

    ``on_step(run, metrics)`` runs after every optimizer step (checkpointing, logging).
    """
    accum = run.config.accumulation_steps()
    usable = steps_per_epoch(run) * accum
    if usable == 0:
        raise ValueError(
            f"data: {len(run.dataset.index)} videos give no full optimizer step of "
            f"{run.config.bs_per_gpu} x {run.env.world_size} ranks x {accum} accumulation; add data or lower bs_per_gpu"
        )
    names = run.objective.metric_names
    bar = tqdm(
        total=steps_per_epoch(run), initial=run.state.batch // accum, desc=f"epoch {run.state.epoch}",
        disable=not run.env.is_main, mininterval=2.0, dynamic_ncols=True,
    )
    batches = iter(make_loader(run))
    window, window_start, clips = [], time.perf_counter(), 0
    try:
        while run.state.batch < usable:
            sums = torch.zeros(len(names), device=run.env.device)
            for i in range(accum):
                batch = next(batches)
                sums += micro_step(run, batch, sync=i == accum - 1)
                run.state.batch += 1
                clips += run.objective.clips_per_sample * batch_videos(batch)
            lr, grad_norm = optimizer_step(run)
            window.append(sums / accum)
            bar.update(1)
            metrics = None
            if run.state.step % run.config.log_every == 0 or run.state.batch >= usable:
                mean = all_reduce_mean(torch.stack(window).mean(0)).tolist()
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                metrics = dict(zip(names, mean, strict=True))
                metrics.update(lr=lr, grad_norm=grad_norm, clips_per_s=clips * run.env.world_size / elapsed)
                metrics.update(step=run.state.step, epoch=run.state.epoch)
                window, window_start, clips = [], time.perf_counter(), 0
            on_step(run, metrics or {"step": run.state.step, "lr": lr, "grad_norm": grad_norm})
            if should_stop(run):
                return True
    finally:
        bar.close()
        del batches  # shuts the loader's workers down now, also when a step raised (see preemption.py)
    run.state.epoch += 1
    run.state.batch = 0
    return False


def log_metrics(run: Run, metrics: dict) -> None:
    """TensorBoard scalars and one plain log line on rank 0 (window metrics, with a 'loss', only)."""
    if not run.env.is_main or "loss" not in metrics:
        return
    step = metrics["step"]
    keys = (*run.objective.metric_names, *COMMON_METRICS)
    if run.writer is not None:
        for key in keys:
            run.writer.add_scalar(f"train/{key}", metrics[key], step)
        run.writer.flush()
    line = " ".join(f"{k} {metrics[k]:.4g}" for k in keys)
    # tqdm.write keeps the line apart from the progress bar (stdout and stderr share a pipe under torchrun)
    tqdm.write(f"[{run.objective.name}] epoch {metrics['epoch']} step {step}: {line}")
    sys.stdout.flush()
    run.history.append(metrics)


def save(run: Run, name: str) -> Path | None:
    """Checkpoint on rank 0 with every rank's RNG; all ranks must call it (collective)."""
    rngs = gather_objects(capture_rng())
    path = None
    if run.env.is_main:
        run.state.schedule = run.schedule.state_dict()
        run.state.metrics = run.history[-1] if run.history else None
        extra = {"stage_start_epoch": run.stage_start_epoch, "config": run.config.to_flat()}
        if run.extra:
            extra["extra_metrics"] = run.extra
        scaler = run.scaler.state_dict() if run.scaler is not None else None
        path = save_checkpoint(
            Path(run.config.checkpoint_dir) / name, run.model, run.optimizer, run.state, rngs, extra, scaler
        )
        prune_checkpoints(run.config.checkpoint_dir, run.config.keep_checkpoints)
    barrier()
    return path


def _open_writer(run: Run) -> None:
    if run.env.is_main:
        from torch.utils.tensorboard import SummaryWriter

        run.writer = SummaryWriter(log_dir=str(Path(run.config.output) / "tensorboard"))


def _train_loop(run: Run, watch: PreemptionWatch) -> None:
    """Epochs to the end (or max_steps): checkpoints every save_every steps and at epoch ends;
    SIGTERM (preemption) saves the step just finished and raises Preempted."""
    config = run.config
    per_epoch = config.accumulation_steps()

    def on_step(r: Run, metrics: dict) -> None:
        log_metrics(r, metrics)
        ends_epoch = r.state.batch >= steps_per_epoch(r) * per_epoch
        name = f"step_{r.state.step:08d}"
        saved = bool(config.save_every and r.state.step % config.save_every == 0 and not ends_epoch)
        if saved:
            save(r, name)  # an epoch's last step is saved just after, as the next epoch's start
        if watch.requested(r.env.device):
            if not saved:
                save(r, name)
            raise Preempted(f"SIGTERM: stopped after step {r.state.step} and saved checkpoint {name}; "
                            "resume continues from it")

    def should_stop(r: Run) -> bool:
        return config.max_steps is not None and r.state.step >= config.max_steps

    while run.state.epoch < run.end_epoch and not should_stop(run):
        if not train_epoch(run, on_step=on_step, should_stop=should_stop):
            run.extra.update(run.objective.after_epoch(run))
            save(run, f"step_{run.state.step:08d}")


def train(config: TrainConfigBase, env: DistEnv, objective: Objective) -> dict:
    """Train to the end epoch (or max_steps); writes ``<output>/metrics.json`` on rank 0 and returns
    the final metrics (rank 0's view)."""
    with watch_sigterm() as watch:
        run = setup_run(config, env, objective)
        _open_writer(run)
        _train_loop(run, watch)
        final = save(run, "final")
    metrics = {
        **(run.history[-1] if run.history else {}),
        "start_step": run.start_step, "step": run.state.step, "epoch": run.state.epoch, "batch_in_epoch": run.state.batch,
        "total_steps": run.schedule.total_steps, "world_size": env.world_size,
        "checkpoint": str(final) if final else str(Path(config.checkpoint_dir) / "final"),
        **run.extra,
    }
    if env.is_main:
        atomic_write_bytes(str(Path(config.output, "metrics.json")), (json.dumps(metrics, indent=1) + "\n").encode())
        if run.writer is not None:
            run.writer.close()
    return metrics
