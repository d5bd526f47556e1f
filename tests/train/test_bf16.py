"""amp bf16 through the one trainer on CPU (2 gloo ranks, real torchrun): pre-training and
fine-tuning track fp32's loss curve, and a killed bf16 run resumes to identical weights. fp16 (with
its loss scaler) stays GPU-only; bf16 is refused where the CPU has no native bf16.

This machine may lack native bf16: the runs set VIMPAC_ALLOW_EMULATED_BF16=1 (torch then computes
the same bf16 numbers by emulation, only slower). Losses are read from the runs' TensorBoard logs.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.finetune.helpers import finetune_flat, time_order_shards
from tests.train.helpers import tiny_config
from vimpac_core.errors import ConfigError
from vimpac_core.precision import ALLOW_EMULATED_ENV, bf16_unsupported_reason
from vimpac_core.train.config import TrainConfigBase
from vimpac_core.train.distributed import DistEnv
from vimpac_core.train.finetune_config import FinetuneConfig
from vimpac_core.train.launch import (
    TrainingFailed,
    kill_tree,
    launch_stage,
    run_streaming,
    torchrun_command,
    write_stage_config,
)
from vimpac_core.train.resolve import resolve_finetune
from vimpac_core.train.trainer import check_amp

CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
# bf16 keeps 8 bits of mantissa. Measured on these runs (emulated bf16, AVX2): per-step losses within
# 0.2% of fp32's in pre-training and 2.1% in fine-tuning (a loss near chance, where one step's
# spike moves most), the means over the run within 0.12%. Allowed: 5% per step, 1% for the mean.
STEP_TOLERANCE, MEAN_TOLERANCE = 0.05, 0.01


def test_fp16_needs_a_gpu_and_bf16_needs_native_support(monkeypatch, tmp_path):
    monkeypatch.delenv(ALLOW_EMULATED_ENV, raising=False)
    assert tiny_config("d", str(tmp_path), amp="bf16").amp == "bf16"  # device cpu: allowed by the config now
    if bf16_unsupported_reason("cpu") is None:
        check_amp("bf16", CPU.device)  # native bf16: nothing to refuse
    else:
        with pytest.raises(ConfigError, match=r"^amp: bf16 on cpu: this CPU has no native bf16.*use amp 'none'"):
            check_amp("bf16", CPU.device)
    with pytest.raises(ConfigError, match="amp: 'fp16'.*needs a GPU"):
        tiny_config("d", str(tmp_path), amp="fp16")
    with pytest.raises(ValueError, match="amp: 'fp16'.*needs a GPU, this run is on cpu"):
        check_amp("fp16", CPU.device)


def _losses(output: Path) -> dict[int, float]:
    events = EventAccumulator(str(output / "tensorboard"))
    events.Reload()
    return {e.step: e.value for e in events.Scalars("train/loss")}


def _weights(output: Path) -> dict[str, torch.Tensor]:
    final = output / "checkpoints" / "final"
    return {**load_file(str(final / "model.safetensors")),
            **{f"adam/{k}": v for k, v in load_file(str(final / "optimizer.safetensors")).items()}}


def _assert_tracks_fp32(bf16: dict[int, float], fp32: dict[int, float], steps: int) -> None:
    assert sorted(bf16) == sorted(fp32) == list(range(1, steps + 1))
    a, b = np.array([bf16[s] for s in sorted(bf16)]), np.array([fp32[s] for s in sorted(fp32)])
    assert np.all(np.abs(a - b) <= STEP_TOLERANCE * b), list(zip(a, b, strict=True))
    assert abs(a.mean() - b.mean()) <= MEAN_TOLERANCE * b.mean()
    assert not np.array_equal(a, b)  # bf16 really ran: the numbers differ from fp32's


def _kill_and_resume(config: TrainConfigBase, kill_line: str, steps: int) -> None:
    """Run ``config``, SIGKILL torchrun and its ranks when ``kill_line`` is logged, resume to the end."""
    procs = []

    def kill(line: str) -> None:
        if line.startswith(kill_line):
            kill_tree(procs[0].pid, signal.SIGKILL)

    with pytest.raises(TrainingFailed, match="code -9"):
        run_streaming(torchrun_command(write_stage_config(config), 2, config.ENTRY), on_line=kill,
                      on_start=procs.append, timeout_s=300)
    assert not (Path(config.output) / "checkpoints" / "final").exists()
    resumed = config.model_copy(update={"resume": True})
    assert launch_stage(resumed, on_line=lambda _: None, timeout_s=300)["step"] == steps


def _assert_same_weights(ref: Path, got: Path) -> None:
    a, b = _weights(ref), _weights(got)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"resumed run differs in {different[:5]}"


@pytest.mark.slow
def test_bf16_pretraining_and_finetuning_on_two_cpu_ranks(monkeypatch, tmp_path):
    monkeypatch.setenv(ALLOW_EMULATED_ENV, "1")  # inherited by torchrun and its ranks
    data = time_order_shards(tmp_path / "data", 12, seed=0)  # 24 labelled videos, 4x4 tokens, 4 frames
    common = dict(nproc_per_node=2, num_workers=0, epochs=2, save_every=2, clip_len=4, dropout=0.1)

    def pretrain(name: str, **over) -> TrainConfigBase:
        return tiny_config(data, str(tmp_path / name), **common, **over)

    # Pre-training: 24 videos / (2 ranks x 2) = 6 steps per epoch, 12 in all.
    assert launch_stage(pretrain("pre_bf16", amp="bf16"), on_line=lambda _: None, timeout_s=300)["step"] == 12
    launch_stage(pretrain("pre_fp32"), on_line=lambda _: None, timeout_s=300)
    _assert_tracks_fp32(_losses(tmp_path / "pre_bf16"), _losses(tmp_path / "pre_fp32"), 12)
    _kill_and_resume(pretrain("pre_bf16_killed", amp="bf16"), "[pretrain] epoch 0 step 5:", 12)
    _assert_same_weights(tmp_path / "pre_bf16", tmp_path / "pre_bf16_killed")

    # Fine-tuning from the bf16 pre-training: 24 videos / (2 ranks x 2) = 6 steps per epoch.
    start = str(tmp_path / "pre_bf16" / "checkpoints" / "final")

    def finetune(name: str, **over) -> FinetuneConfig:
        flat = finetune_flat(data, str(tmp_path / name), load=start, nproc_per_node=2, bs_per_gpu=2,
                             save_every=2, lr=1e-3, **over)
        return resolve_finetune(FinetuneConfig.from_flat(flat))

    ft = launch_stage(finetune("ft_bf16", amp="bf16"), on_line=lambda _: None, timeout_s=300)
    assert ft["step"] == 12 and "test_top1" in ft
    launch_stage(finetune("ft_fp32"), on_line=lambda _: None, timeout_s=300)
    _assert_tracks_fp32(_losses(tmp_path / "ft_bf16"), _losses(tmp_path / "ft_fp32"), 12)
    _kill_and_resume(finetune("ft_bf16_killed", amp="bf16"), "[finetune] epoch 0 step 5:", 12)
    _assert_same_weights(tmp_path / "ft_bf16", tmp_path / "ft_bf16_killed")
