"""The pre-training loop: micro-batches accumulated to a global batch, one optimizer step each.

Per optimizer step, on every rank: ``accumulation`` micro-batches of ``bs_per_gpu`` videos
(two clips each, so codes [2B, T, H, W]) are block-masked with a generator keyed on
(seed, epoch, micro-batch, rank), run forward under autocast (bf16/fp16 on GPU), and
backpropagated with DDP's gradient sync only on the last one; then gradients are clipped,
the schedule sets the lr, and AdamW steps. Metrics are averaged over ranks every ``log_every``
steps and written to TensorBoard on rank 0. Checkpoints every ``save_every`` steps and at the end
of each epoch; everything that decides the next step (weights, moments, RNG, data position)
is in them, so a resumed run continues bit-for-bit on CPU.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vimpac_core.data import PretrainClips
from vimpac_core.model import VimpacForPreTraining, block_mask
from vimpac_core.train.checkpoint import TrainerState
from vimpac_core.train.config import PretrainConfig
from vimpac_core.train.distributed import DistEnv, all_reduce_mean
from vimpac_core.train.schedule import Schedule

METRIC_NAMES = ("loss", "mlm_loss", "nce_loss", "mask_accuracy")


@dataclass
class Run:
    """The live objects of one training run (built by pretrain.setup_run)."""

    config: PretrainConfig
    env: DistEnv
    model: VimpacForPreTraining  # unwrapped (for saving)
    ddp: torch.nn.Module  # DDP-wrapped when distributed, else the model itself
    optimizer: torch.optim.AdamW
    schedule: Schedule
    dataset: PretrainClips
    state: TrainerState
    end_epoch: int
    stage_start_epoch: int
    scaler: torch.amp.GradScaler | None = None
    writer: object | None = None  # torch.utils.tensorboard.SummaryWriter on rank 0
    history: list[dict] = field(default_factory=list)


def mask_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """Seed of the block-mask generator of one micro-batch (independent of resume and workers)."""
    return int(np.random.SeedSequence([seed, epoch, batch, rank]).generate_state(1)[0])


def to_model_batch(pairs: torch.Tensor) -> torch.Tensor:
    """[B, 2, T, H, W] pairs -> [2B, T, H, W]: first clips, then second clips (NCE pairing)."""
    return torch.cat([pairs[:, 0], pairs[:, 1]])


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
    )


def _autocast(run: Run) -> contextlib.AbstractContextManager:
    if run.config.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if run.config.amp == "bf16" else torch.float16
    return torch.autocast(device_type=run.env.device.type, dtype=dtype)


def micro_step(run: Run, pairs: torch.Tensor, sync: bool) -> torch.Tensor:
    """Forward + backward of one micro-batch; returns the detached metrics [loss, mlm, nce, acc]."""
    cfg, state = run.config.model, run.state
    codes = to_model_batch(pairs)
    gen = torch.Generator().manual_seed(mask_seed(run.config.seed, state.epoch, state.batch, run.env.rank))
    masked, labels = block_mask(
        codes, run.config.mask_blocks, cfg.pad_id, cfg.mask_id, gen,
        mask_rand_replace=run.config.mask_rand_replace, vocab_size=cfg.vocab_size,
    )
    device = run.env.device
    no_sync = getattr(run.ddp, "no_sync", None)
    context = contextlib.nullcontext() if sync or no_sync is None else no_sync()
    with context:
        with _autocast(run):
            out = run.ddp(masked.to(device, non_blocking=True), mlm_labels=labels.to(device, non_blocking=True))
        loss = out.loss / run.config.accumulation_steps()
        (run.scaler.scale(loss) if run.scaler else loss).backward()
    values = [out.loss, out.mlm_loss, out.nce_loss, out.mask_accuracy]
    return torch.stack([torch.as_tensor(v if v is not None else 0.0, device=device).float().detach() for v in values])


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


def train_epoch(
    run: Run,
    *,
    on_step: Callable[[Run, dict], None],
    should_stop: Callable[[Run], bool],
) -> bool:
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
    total = steps_per_epoch(run)
    bar = tqdm(
        total=total, initial=run.state.batch // accum, desc=f"epoch {run.state.epoch}",
        disable=not run.env.is_main, mininterval=2.0, dynamic_ncols=True,
    )
    batches = iter(make_loader(run))
    window, window_start, clips = [], time.perf_counter(), 0
    try:
        while run.state.batch < usable:
            sums = torch.zeros(len(METRIC_NAMES), device=run.env.device)
            for i in range(accum):
                pairs = next(batches)
                sums += micro_step(run, pairs, sync=i == accum - 1)
                run.state.batch += 1
                clips += 2 * pairs.shape[0]
            lr, grad_norm = optimizer_step(run)
            window.append(sums / accum)
            bar.update(1)
            metrics = None
            if run.state.step % run.config.log_every == 0 or run.state.batch >= usable:
                mean = all_reduce_mean(torch.stack(window).mean(0)).tolist()
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                metrics = dict(zip(METRIC_NAMES, mean, strict=True))
                metrics.update(lr=lr, grad_norm=grad_norm, clips_per_s=clips * run.env.world_size / elapsed)
                metrics.update(step=run.state.step, epoch=run.state.epoch)
                window, window_start, clips = [], time.perf_counter(), 0
            on_step(run, metrics or {"step": run.state.step, "lr": lr, "grad_norm": grad_norm})
            if should_stop(run):
                return True
    finally:
        bar.close()
    run.state.epoch += 1
    run.state.batch = 0
    return False


def log_metrics(run: Run, metrics: dict) -> None:
    """TensorBoard scalars and one plain log line on rank 0 (metrics with a 'loss' only)."""
    if not run.env.is_main or "loss" not in metrics:
        return
    step = metrics["step"]
    if run.writer is not None:
        for key in (*METRIC_NAMES, "lr", "grad_norm", "clips_per_s"):
            run.writer.add_scalar(f"train/{key}", metrics[key], step)
        run.writer.flush()
    line = " ".join(f"{k} {metrics[k]:.4g}" for k in (*METRIC_NAMES, "lr", "grad_norm", "clips_per_s"))
    # tqdm.write keeps the line apart from the progress bar (stdout and stderr share a pipe under torchrun)
    tqdm.write(f"[pretrain] epoch {metrics['epoch']} step {step}: {line}")
    sys.stdout.flush()
    run.history.append(metrics)
