"""Train-step throughput and peak memory: our model vs plain eager references of the same math.

One training step = forward + backward + AdamW step with the mask-then-predict + NCE losses on
block-masked random codes (two clips per video). Each implementation runs in its own subprocess
(one CPU thread) so its peak RSS is its own. Implementations:

- ``ours``: VimpacForPreTraining (SDPA over batched lines, prediction head on masked rows only).
- ``reference_loops``: tests/model/reference.py as the tests use it: explicit softmax attention,
  a Python loop over the lines of every axis, full logits then the loss on masked positions.
- ``reference_batched``: the same reference with every line of an axis in one explicit matmul.

Usage: python bench/bench_model.py [--smoke]   (writes bench/out/model.json)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPLS = ("ours", "reference_loops", "reference_batched")


def _settings(smoke: bool) -> dict:
    # Small model (hid_dim 512, T,H|W, hw_separation, frame 128 -> 16x16, clip 5, NCE hidden 2048),
    # layers reduced for CPU time; smoke: 1 layer, frame 32.
    return dict(layers=1 if smoke else 2, hid_dim=512, frame_size=32 if smoke else 128, clip_len=5,
                videos=2, steps=2 if smoke else 5, warmup=1)


def _build(impl: str, s: dict):
    import torch

    sys.path.insert(0, str(REPO))
    from tests.model import reference as ref
    from tests.model.helpers import config_from
    from vimpac_core.model import VimpacForPreTraining

    f = ref.flags(layers=s["layers"], hid_dim=s["hid_dim"], frame_size=s["frame_size"], clip_len=s["clip_len"],
                  vocab_size=8192, nce_proj_hid_dim=2048)
    config = config_from(f, dropout=0.0)  # the reference has no dropout: same math on both sides
    ours = VimpacForPreTraining(config)  # every implementation starts from these weights
    if impl == "ours":
        model = ours

        def loss_fn(codes, labels):
            return model(codes, labels).loss
    else:
        model = ref.ModelWithHead(f, loop_lines=impl == "reference_loops")
        model.load_state_dict(ours.state_dict(), strict=True)
        del ours

        def loss_fn(codes, labels):
            proj, logits = model(codes)
            chosen = labels != -100
            mlm = torch.nn.functional.cross_entropy(logits[chosen], labels[chosen])
            return mlm + _plain_nce(proj, 0.2)
    return model.train(), loss_fn, config


def _plain_nce(proj, tau: float):
    """SimCLR NCE × τ written out with plain tensor ops (large negative on the self-similarity)."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(proj, dim=-1)
    b = z.shape[0] // 2
    h1, h2 = z[:b], z[b:]
    eye = torch.eye(b) * 1e9
    target = torch.arange(b)
    l1 = F.cross_entropy(torch.cat([h1 @ h2.T / tau, h1 @ h1.T / tau - eye], 1), target)
    l2 = F.cross_entropy(torch.cat([h2 @ h1.T / tau, h2 @ h2.T / tau - eye], 1), target)
    return (l1 + l2) * tau


def worker(impl: str, smoke: bool) -> dict:
    """Run in a fresh process: time the training steps of one implementation."""
    import psutil
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    s = _settings(smoke)
    model, loss_fn, config = _build(impl, s)
    from vimpac_core.model import block_mask

    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, config.vocab_size, (2 * s["videos"], *config.grid_shape), generator=g)
    masked, labels = block_mask(codes, 5, config.pad_id, config.mask_id, g)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rss_before = psutil.Process().memory_info().rss
    times = []
    for step in range(s["warmup"] + s["steps"]):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(masked, labels)
        loss.backward()
        optimizer.step()
        if step >= s["warmup"]:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    step_s = statistics.median(times)
    tokens = codes.numel()
    return {"impl": impl, "step_s_median": step_s, "tokens_per_step": tokens, "tokens_per_s": tokens / step_s,
            "peak_rss_delta_mb": max(0, peak - rss_before) / 2**20, "loss": float(loss), "steps": len(times),
            "step_times_s": times}


def main(smoke: bool) -> dict:
    """Run every implementation in a subprocess; ratios are against the references of the same run."""
    from tqdm import tqdm

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # Rounds interleave the implementations so a busy shared CPU hurts them alike.
    rounds = 1 if smoke else 2
    runs: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
    for _, impl in tqdm([(r, i) for r in range(rounds) for i in IMPLS], desc="bench_model"):
        cmd = [sys.executable, __file__, "--worker", impl] + (["--smoke"] if smoke else [])
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=1800)
        runs[impl].append(json.loads(done.stdout.strip().splitlines()[-1]))
    results = {}
    for impl, outs in runs.items():
        step_s = statistics.median(t for o in outs for t in o["step_times_s"])
        results[impl] = {**outs[-1], "rounds": len(outs), "step_s_median": step_s,
                         "tokens_per_s": outs[-1]["tokens_per_step"] / step_s,
                         "peak_rss_delta_mb": max(o["peak_rss_delta_mb"] for o in outs)}
    ours = results["ours"]
    figures = {
        "settings": {**_settings(smoke), "threads": 1, "dropout": 0.0, "mask_blocks": 5, "vocab_size": 8192,
                     "layout": "T,H|W", "pos_emb": "hw_separation", "nce_proj_hid_dim": 2048, "smoke": smoke},
        "results": results,
        "speedup_vs_reference_loops": ours["tokens_per_s"] / results["reference_loops"]["tokens_per_s"],
        "speedup_vs_reference_batched": ours["tokens_per_s"] / results["reference_batched"]["tokens_per_s"],
        "memory_ratio_vs_reference_batched": ours["peak_rss_delta_mb"]
        / max(1e-9, results["reference_batched"]["peak_rss_delta_mb"]),
    }
    out = REPO / "bench" / "out" / "model.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (< 30 s)")
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.smoke)))
    else:
        print(json.dumps(main(args.smoke), indent=2))
