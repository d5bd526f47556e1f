"""Tiny shards and tiny pre-training configs shared by the training tests; finding rank processes."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from vimpac_core.shards.synthetic import token_rows, write_token_shards
from vimpac_core.train.config import PretrainConfig

VOCAB = 64


def tiny_shards(root: Path, *, videos: int = 16, grid: int = 4, frames=(4, 6, 9)) -> str:
    """Random token shards (vocab 64) at a grid x grid token grid; returns the folder URL."""
    write_token_shards(str(root), token_rows(videos, grid=grid, frames=list(frames), vocab_size=VOCAB),
                       rows_per_shard=8, row_group_size=4)
    return str(root)


def tiny_flat(data: str, output: str, **over) -> dict:
    """Flat config of a 1-layer, 128-wide model at frame 32 (4x4 tokens), clip of 2 frames."""
    flat = dict(
        layers=1, hid_dim=128, frame_size=32, clip_len=2, vocab_size=VOCAB, nce_proj_hid_dim=64, mask_blocks=2,
        frame_rate=1, data=data, output=output, bs_per_gpu=2, num_workers=0, epochs=2, log_every=1,
        device="cpu", seed=3,
    )
    flat.update(over)
    return flat


def tiny_config(data: str, output: str, **over) -> PretrainConfig:
    return PretrainConfig.from_flat(tiny_flat(data, output, **over))


def rank_processes(root_pid: int, module: str = "vimpac_core.train.pretrain") -> list[psutil.Process]:
    """The training ranks of ``module`` under ``root_pid`` (torchrun's own command line names it too)."""
    try:
        tree = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    ranks = []
    for proc in tree:
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if module in cmd and "torch.distributed.run" not in cmd:
            ranks.append(proc)
    return ranks


def wait_until_training(root_pid: int, output: Path, ranks: int, timeout_s: float = 120) -> list[psutil.Process]:
    """Block until ``ranks`` rank processes run and rank 0 is past set-up (its TensorBoard folder exists)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = rank_processes(root_pid)
        if len(found) == ranks and (output / "tensorboard").is_dir():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{ranks} ranks did not start training within {timeout_s} s")


def survivors(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Those of ``procs`` still running after ``timeout_s`` (zombies count as gone)."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for proc in procs:
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)
