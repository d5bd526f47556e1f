"""Fine-tuning step and evaluation throughput (clips/s), each against a baseline of the same run.

- fine-tune step: a full optimizer step of the shared trainer with the fine-tuning objective
  (FinetuneClips from Parquet shards, forward, cross-entropy, backward, clip, AdamW), clips/s,
  median over steps after a warm-up step; baseline: the pre-training objective's step on the same
  backbone (two clips per video, block masking, MLM + NCE heads), same batch of videos.
- evaluation: `evaluate_model` (multi-view test set read from shards, views x clips per video,
  softmax averaged, gathered), clips/s, median over repeats; baseline: the bare model forward on
  the same number of clips already in memory (what the data pipeline and aggregation cost).
Full mode: the small model (6 x 512) at frame 128 (16x16 tokens, clip of 5); smoke mode: a
1-layer model at frame 32 (< 30 s).

    python bench/bench_finetune.py [--smoke]      # writes bench/out/finetune.json
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vimpac_core.shards.synthetic import token_rows, write_token_shards  # noqa: E402
from vimpac_core.train import finetune, pretrain, trainer  # noqa: E402
from vimpac_core.train.config import PretrainConfig  # noqa: E402
from vimpac_core.train.distributed import DistEnv  # noqa: E402
from vimpac_core.train.evaluate import TestSet, evaluate_model  # noqa: E402
from vimpac_core.train.finetune_config import FinetuneConfig  # noqa: E402
from vimpac_core.train.resolve import resolve_finetune  # noqa: E402

CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
VIEWS = ("s128-top-noflip", "s128-center-noflip", "s128-bottom-noflip")


def _settings(smoke: bool) -> dict:
    if smoke:
        model = dict(layers=1, hid_dim=128, frame_size=32, clip_len=2, nce_proj_hid_dim=128, vocab_size=64)
        return dict(model=model, grid=4, videos=12, frames=4, frame_rate=1, bs=4, steps=2, clips=2, repeats=1)
    model = dict(layers=6, hid_dim=512, frame_size=128, clip_len=5, vocab_size=8192)
    return dict(model=model, grid=16, videos=24, frames=40, frame_rate=8, bs=4, steps=4, clips=2, repeats=2)


def _flat(data: str, output: str, s: dict) -> dict:
    return dict(data=data, output=output, frame_rate=s["frame_rate"], bs_per_gpu=s["bs"], num_workers=0, epochs=1,
                device="cpu", log_every=1000, dropout=0.1, **s["model"])


def step_clips_per_s(run: trainer.Run, steps: int) -> float:
    """Median clips/s of full optimizer steps (first one is a warm-up) of ``run``'s objective."""
    batches = iter(trainer.make_loader(run))
    rates = []
    for i in range(steps + 1):
        batch = next(batches)
        start = time.perf_counter()
        trainer.micro_step(run, batch, sync=True)
        trainer.optimizer_step(run)
        if i:
            clips = run.objective.clips_per_sample * trainer.batch_videos(batch)
            rates.append(clips / (time.perf_counter() - start))
    return statistics.median(rates)


def eval_clips_per_s(model: torch.nn.Module, test: TestSet, clips: int, repeats: int) -> tuple[float, int]:
    rates, count = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = evaluate_model(model, test, CPU, clips)
        count = result.metrics["videos"] * result.metrics["views"] * clips
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates), count


@torch.no_grad()
def forward_clips_per_s(model: torch.nn.Module, count: int, batch: int, repeats: int) -> float:
    cfg = model.config
    codes = torch.randint(0, cfg.vocab_size, (count, cfg.clip_len, cfg.grid_size, cfg.grid_size))
    model.eval()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, count, batch):
            model(codes[i : i + batch]).logits.softmax(-1)
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main(smoke: bool = False) -> dict:
    s = _settings(smoke)
    with tempfile.TemporaryDirectory() as tmp:
        data = f"{tmp}/shards"
        rows = token_rows(s["videos"], grid=s["grid"], frames=s["frames"], views=VIEWS, vocab_size=s["model"]["vocab_size"])
        write_token_shards(data, rows, rows_per_shard=24, row_group_size=12)
        tune = finetune.setup_run(resolve_finetune(FinetuneConfig.from_flat(_flat(data, f"{tmp}/ft", s))), CPU)
        pre = pretrain.setup_run(PretrainConfig.from_flat({**_flat(data, f"{tmp}/pre", s), "mask_blocks": 5}), CPU)
        finetune_rate = step_clips_per_s(tune, s["steps"])
        pretrain_rate = step_clips_per_s(pre, s["steps"])
        test = TestSet(data, None, list(VIEWS), s["frame_rate"], "start", s["bs"])
        eval_rate, count = eval_clips_per_s(tune.model, test, s["clips"], s["repeats"])
        batch = max(int(s["bs"] * 1.5) // (len(VIEWS) * s["clips"]), 1) * len(VIEWS) * s["clips"]
        forward_rate = forward_clips_per_s(tune.model, count, batch, s["repeats"])
    return {
        "mode": "smoke" if smoke else "full",
        "model": s["model"],
        "finetune_step_clips_per_s": round(finetune_rate, 2),
        "pretrain_step_clips_per_s": round(pretrain_rate, 2),
        "finetune_vs_pretrain_step": round(finetune_rate / pretrain_rate, 3),
        "eval_clips_per_s": round(eval_rate, 2),
        "bare_forward_clips_per_s": round(forward_rate, 2),
        "eval_vs_bare_forward": round(eval_rate / forward_rate, 3),
        "eval_clips": count,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    from bench.run_all import run_script

    run_script("finetune", main, __doc__, "tiny inputs, one repeat")
