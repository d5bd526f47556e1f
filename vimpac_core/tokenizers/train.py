"""Training loop of our VQ-VAE tokenizer (library code: no Prefect here).

Frames are uint8 [N, S, S, 3] already in memory (``frames.sample_frames``). Each step draws a
random batch (with random horizontal flips), minimises MSE reconstruction + commitment loss with
Adam, and updates the codebook by EMA inside the forward pass. Checkpoints are folders written
next to their final place and renamed into it, so a crash never leaves half a checkpoint; they hold
the model (weights + EMA buffers), the optimizer, the step and the RNG state, so a resumed run
continues exactly where the interrupted one was.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import ConfigDict, Field
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from vimpac_core import interrupts
from vimpac_core.config_base import CheckedConfig
from vimpac_core.errors import CheckpointError, ConfigError
from vimpac_core.optim_state import load_optimizer_tensors, optimizer_tensors
from vimpac_core.storage import complete_dir, staged_dir
from vimpac_core.tokenizers.vqvae import VQVAE, VQVAEConfig, pixels_to_model_range

log = logging.getLogger(__name__)
CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE = "trainer.safetensors"  # Adam moments by parameter name + the torch RNG; no pickle
TRAIN_CONFIG = "train_config.json"


class TrainConfig(CheckedConfig):
    """How the VQ-VAE tokenizer trains (a ConfigError names the field of a bad value)."""

    KIND: ClassVar[str] = "tokenizer training"
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(2000, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Frames per step.")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate.")
    seed: int = Field(0, description="Seed of the initial weights and of the frame order.")
    checkpoint_every: int = Field(200, ge=1, description="Steps between checkpoints.")
    log_every: int = Field(50, ge=1, description="Steps between logged losses.")
    hflip: bool = Field(True, description="Random horizontal flips.")
    model: VQVAEConfig = Field(default_factory=VQVAEConfig, description="The VQ-VAE's shape (VQVAEConfig fields).")


def to_model_input(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1]."""
    return pixels_to_model_range(torch.as_tensor(frames).permute(0, 3, 1, 2).float())


def perplexity(codes: torch.Tensor, codebook_size: int) -> float:
    """exp(entropy) of the code histogram: the effective number of codes in use."""
    p = torch.bincount(codes.flatten(), minlength=codebook_size).float()
    p = p[p > 0] / p.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def make_optimizer(model: VQVAE, lr: float) -> torch.optim.Adam:
    """Adam whose group carries parameter names, so its state is saved and restored by name."""
    names, params = zip(*model.named_parameters(), strict=True)
    return torch.optim.Adam([{"params": list(params), "names": list(names)}], lr=lr)


def save_checkpoint(out_dir: Path, model: VQVAE, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> Path:
    """Write ``out_dir/checkpoint`` atomically: build it in a hidden sibling, then swap it in."""
    with staged_dir(out_dir / CHECKPOINT_DIR, clear_stale=True) as tmp:
        model.save_pretrained(tmp)
        tensors = {f"optimizer/{k}": v for k, v in optimizer_tensors(opt).items()}
        save_file({**tensors, "torch_rng": torch.get_rng_state()}, str(tmp / TRAINER_STATE), metadata={"step": str(step)})
        (tmp / TRAIN_CONFIG).write_text(json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=True))
    return out_dir / CHECKPOINT_DIR


def find_checkpoint(out_dir: Path) -> Path | None:
    """The latest complete checkpoint folder (``checkpoint``, else the backup a crash inside
    ``replace_dir`` left), or None."""
    found = complete_dir(out_dir / CHECKPOINT_DIR)
    return found if found is not None and (found / TRAINER_STATE).is_file() else None


def load_checkpoint(path: Path, model_config: VQVAEConfig) -> tuple[VQVAE, dict]:
    """(model, trainer state) from a checkpoint folder; its model config must equal ``model_config``."""
    model = VQVAE.from_pretrained(path)
    if model.config != model_config:
        raise CheckpointError(f"{path} was trained with model config {model.config}, not {model_config}; "
                              "use the same model flags to resume, or another --out")
    try:
        with safe_open(str(path / TRAINER_STATE), "pt") as f:
            state = {"step": int(f.metadata()["step"]), **{k: f.get_tensor(k) for k in f.keys()}}  # noqa: SIM118
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path / TRAINER_STATE} is unreadable ({exc}); delete {path} to start over") from exc
    return model, state


def train_vqvae(frames: np.ndarray, out_dir: str | os.PathLike, cfg: TrainConfig, *, resume: bool = False,
                log_fn: Callable[[str], None] | None = None, progress: bool = True) -> tuple[VQVAE, list[dict]]:
    """Train (or resume training) a VQ-VAE on uint8 frames [N, S, S, 3]; checkpoints in ``out_dir``.

    Returns:
        (model in eval mode, history: one dict per logged step with step, loss, recon_loss,
        commit_loss, perplexity, codebook_usage = share of codes used since the previous log).
    """
    emit = log_fn or log.info
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    found = find_checkpoint(out)
    if found and not resume:
        raise ConfigError(f"{out} already holds a checkpoint: pass resume=True (--resume) or use another folder")
    data = torch.from_numpy(np.ascontiguousarray(frames))
    if data.ndim != 4 or data.dtype != torch.uint8 or len(data) == 0:
        raise ConfigError(f"training frames must be uint8 [N, S, S, 3] with N >= 1, got {tuple(data.shape)}")
    if found:
        model, state = load_checkpoint(found, cfg.model)
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        emit(f"resuming from {found} at step {start}")
    else:
        torch.manual_seed(cfg.seed)
        model, state, start = VQVAE(cfg.model), None, 0
    model.train()
    opt = make_optimizer(model, cfg.lr)
    if state is not None:
        prefix = "optimizer/"
        load_optimizer_tensors(opt, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    history: list[dict] = []
    window = torch.zeros(cfg.model.codebook_size, dtype=torch.long)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train-tokenizer", disable=not progress)
    for step in bar:
        if interrupts.stop_requested():  # the user's Ctrl-C / SIGTERM: keep what was learned, then stop
            if step > start:
                save_checkpoint(out, model, opt, step, cfg)
            bar.close()
            interrupts.check_stop(f"training the tokenizer at step {step}")
        batch = data[torch.randint(0, len(data), (cfg.batch_size,))]
        if cfg.hflip:
            flip = torch.rand(len(batch)) < 0.5
            batch[flip] = batch[flip].flip(2)
        outputs = model(to_model_input(batch))
        opt.zero_grad(set_to_none=True)
        outputs["loss"].backward()
        opt.step()
        window += torch.bincount(outputs["codes"].flatten(), minlength=cfg.model.codebook_size)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            record = {"step": done, **{k: outputs[k].item() for k in ("loss", "recon_loss", "commit_loss")},
                      "perplexity": perplexity(outputs["codes"], cfg.model.codebook_size),
                      "codebook_usage": float((window > 0).float().mean())}
            history.append(record)
            window.zero_()
            bar.set_postfix(loss=f"{record['loss']:.4f}", ppl=f"{record['perplexity']:.1f}")
            emit(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if not math.isfinite(record["loss"]):
                raise ConfigError(f"training diverged at step {done} (loss {record['loss']}); lower --lr")
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save_checkpoint(out, model, opt, done, cfg)
    bar.close()
    return model.eval(), history
