"""Loader throughput vs training consumption: can the shard reader keep a training step fed?

Measures, in one run on the same machine:
- loader clips/s: PretrainClips over Parquet shards through a DataLoader (2 workers, and 0 as a
  baseline), clips counted as 2 per video (the NCE pair), median over repeats;
- training clips/s: one optimizer step of VimpacForPreTraining (block masking, forward, backward,
  clip, AdamW) on batches of the same shape, median over steps after a warm-up step.
The figure of merit is loader / training (goal >= 10x). Full mode: the small model (6 x 512) at
frame 128 (16x16 tokens, clip of 5) with 2 videos per step; smoke mode: the tiny preset's model
at frame 32, fewer videos (< 30 s).

    python bench/bench_loader.py [--smoke]      # writes bench/out/loader.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vimpac_core.data import PretrainClips  # noqa: E402
from vimpac_core.model import VimpacConfig, VimpacForPreTraining, block_mask  # noqa: E402
from vimpac_core.shards.reader import ShardIndex  # noqa: E402
from vimpac_core.shards.synthetic import token_rows, write_token_shards  # noqa: E402
from vimpac_core.train.optim import build_optimizer  # noqa: E402
from vimpac_core.train.pretrain import to_model_batch  # noqa: E402


def _settings(smoke: bool) -> dict:
    if smoke:
        model = VimpacConfig(layers=1, hid_dim=128, frame_size=32, clip_len=2, nce_proj_hid_dim=128)
        return dict(model=model, videos=48, frames=8, frame_rate=1, bs=4, steps=5, repeats=2)
    model = VimpacConfig(layers=6, hid_dim=512, frame_size=128, clip_len=5)
    return dict(model=model, videos=256, frames=24, frame_rate=2, bs=2, steps=4, repeats=3)


def loader_clips_per_s(index: ShardIndex, cfg: VimpacConfig, s: dict, workers: int) -> float:
    """Median clips/s of one full pass over the shards (2 clips per video)."""
    rates = []
    for repeat in range(s["repeats"]):
        ds = PretrainClips(index, clip_len=cfg.clip_len, frame_rate=s["frame_rate"], grid_size=cfg.grid_size,
                           pad_id=cfg.pad_id, batch_size=s["bs"], seed=repeat)
        start = time.perf_counter()
        n = sum(2 * batch.shape[0] for batch in DataLoader(ds, batch_size=s["bs"], num_workers=workers))
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def train_clips_per_s(index: ShardIndex, cfg: VimpacConfig, s: dict) -> float:
    """Median clips/s of full optimizer steps (mask, forward, backward, clip, AdamW) on real batches."""
    torch.manual_seed(0)
    model = VimpacForPreTraining(cfg)
    opt = build_optimizer(model, lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.05)
    ds = PretrainClips(index, clip_len=cfg.clip_len, frame_rate=s["frame_rate"], grid_size=cfg.grid_size,
                       pad_id=cfg.pad_id, batch_size=s["bs"])
    batches = iter(DataLoader(ds, batch_size=s["bs"]))
    times = []
    for _ in range(s["steps"] + 1):
        codes = to_model_batch(next(batches))
        start = time.perf_counter()
        masked, labels = block_mask(codes, 5, cfg.pad_id, cfg.mask_id)
        model(masked, mlm_labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return 2 * s["bs"] / statistics.median(times[1:])  # first step: warm-up


def main(smoke: bool) -> dict:
    s = _settings(smoke)
    cfg: VimpacConfig = s["model"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = token_rows(s["videos"], grid=cfg.grid_size, frames=s["frames"], vocab_size=cfg.vocab_size)
        write_token_shards(tmp, rows, rows_per_shard=64, row_group_size=16)
        index = ShardIndex.build(tmp)
        loader2 = loader_clips_per_s(index, cfg, s, workers=2)
        loader0 = loader_clips_per_s(index, cfg, s, workers=0)
        train = train_clips_per_s(index, cfg, s)
    result = {
        "mode": "smoke" if smoke else "full",
        "model": f"layers {cfg.layers} hid_dim {cfg.hid_dim} frame {cfg.frame_size} clip_len {cfg.clip_len}",
        "videos": s["videos"], "bs_per_step": s["bs"], "torch_threads": torch.get_num_threads(),
        "loader_clips_per_s_2_workers": round(loader2, 1),
        "loader_clips_per_s_0_workers": round(loader0, 1),
        "train_clips_per_s": round(train, 4),
        "ratio_loader_over_train": round(loader2 / train, 1),
        "ratio_loader0_over_train": round(loader0 / train, 1),
        "goal_ratio": 10,
    }
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "loader.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model and data (< 30 s)")
    print(json.dumps(main(parser.parse_args().smoke), indent=1))
