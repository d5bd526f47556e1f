"""Train-step throughput and peak memory: our model vs plain eager references of the same math.

The model is the small preset's (configs/pretrain/small.yaml: all its layers, hid_dim 512, T,H|W,
hw_separation, frame 128, clip 5, vocab 8192, NCE hidden 2048); only the batch is reduced (2 videos
x 2 clips). One training step = forward + backward + grad-clip + AdamW step (the preset's optimizer
and clip) with the mask-then-predict + NCE losses on block-masked random codes, fp32, one CPU
thread, dropout 0 (the reference has none). Each implementation runs in its own process, from the
same weights. Implementations:

- ``ours``: VimpacForPreTraining (SDPA over batched lines, prediction head on masked rows only).
- ``reference_batched`` (the headline baseline): bench/reference_model.py with every line of an axis
  in one explicit softmax(QK^T)V, full-vocabulary logits at every position, then cross-entropy on
  the masked positions, as the original VIMPAC code does.
- ``reference_loops``: the same reference as the tests use it, a Python loop over the lines.

Peak memory is the worker's own VmHWM (/proc/self/status), reset after the warm-up step by writing
5 to /proc/self/clear_refs (where refused, the worker's whole-life peak is kept and marked). Not
ru_maxrss: it survives fork+exec and would report the parent's peak (see bench_rss.py).

Usage: python bench/bench_model.py [--smoke]   (writes bench/out/model.json, model.smoke.json)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "configs" / "pretrain" / "small.yaml"
IMPLS = ("ours", "reference_batched", "reference_loops")


def _settings(smoke: bool) -> dict:
    # Smoke shrinks the model too (1 layer, frame 32) so it runs in seconds.
    return dict(videos=2, clips_per_video=2, warmup=1, steps=2 if smoke else 4, rounds=1 if smoke else 2,
                model_overrides=dict(layers=1, frame_size=32) if smoke else {})


def _status_mib(field: str) -> float:
    """VmHWM / VmRSS of this process, MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _build(impl: str, s: dict):
    """-> (model in train mode, loss_fn(codes, labels), stage config of the preset)."""
    import torch

    from bench import reference_model as ref
    from vimpac_core.model import VimpacForPreTraining, nce_loss
    from vimpac_core.train.config import parse_stages

    stage = parse_stages(PRESET)[0]
    config = stage.model.model_copy(update={"dropout": 0.0, **s["model_overrides"]})
    stage = stage.model_copy(update={"model": config})
    ours = VimpacForPreTraining(config)  # every implementation starts from these weights
    if impl == "ours":
        return ours.train(), lambda codes, labels: ours(codes, labels).loss, stage
    f = ref.flags(**{k: getattr(config, k) for k in (
        "layers", "hid_dim", "layout", "pos_emb", "pre_activation", "halve_att", "halve_mlp", "frame_size",
        "clip_len", "vocab_size", "nce_proj_layers", "nce_proj_hid_dim", "nce_bn_after_proj")})
    reference = ref.ModelWithHead(f, loop_lines=impl == "reference_loops")
    reference.load_state_dict(ours.state_dict(), strict=True)  # ours is freed on return

    def loss_fn(codes, labels):
        proj, logits = reference(codes)  # logits at every position, as the original
        chosen = labels != -100
        mlm = torch.nn.functional.cross_entropy(logits[chosen], labels[chosen])
        return config.mlm_weight * mlm + config.nce_weight * nce_loss(proj, config.nce_temperature)
    return reference.train(), loss_fn, stage


def worker(impl: str, smoke: bool) -> dict:
    """Run in a fresh process: time the training steps of one implementation, and its peak memory."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    s = _settings(smoke)
    model, loss_fn, stage = _build(impl, s)
    from vimpac_core.model import block_mask
    from vimpac_core.train.optim import build_optimizer

    config = stage.model
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, config.vocab_size, (s["videos"] * s["clips_per_video"], *config.grid_shape), generator=g)
    masked, labels = block_mask(codes, stage.mask_blocks, config.pad_id, config.mask_id, g)
    optimizer = build_optimizer(model, lr=stage.lr, beta1=stage.beta1, beta2=stage.beta2, eps=stage.eps,
                                weight_decay=stage.weight_decay)
    model_mib = _status_mib("VmRSS")  # interpreter + weights + data, before any step
    times, reset = [], False
    for step in range(s["warmup"] + s["steps"]):
        if step == s["warmup"]:
            reset = _reset_peak()  # the measured steps' own peak (Adam state already allocated)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(masked, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), stage.grad_clip)
        optimizer.step()
        if step >= s["warmup"]:
            times.append(time.perf_counter() - start)
    peak_mib = _status_mib("VmHWM")
    step_s = statistics.median(times)
    tokens = codes.numel()
    return {"impl": impl, "step_s_median": step_s, "tokens_per_step": tokens, "tokens_per_s": tokens / step_s,
            "masked_fraction": float((labels != -100).float().mean()), "model_rss_mib": model_mib,
            "peak_rss_mib": peak_mib, "step_peak_over_model_mib": peak_mib - model_mib,
            "peak_reset_after_warmup": reset, "loss": loss.item(), "steps": len(times), "step_times_s": times}


def main(smoke: bool) -> dict:
    """Run every implementation in a subprocess; ratios are against the references of the same run."""
    from tqdm import tqdm

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    s = _settings(smoke)
    # Rounds interleave the implementations so a busy shared CPU hurts them alike.
    runs: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
    load_before = os.getloadavg()
    for _, impl in tqdm([(r, i) for r in range(s["rounds"]) for i in IMPLS], desc="bench_model"):
        cmd = [sys.executable, __file__, "--worker", impl] + (["--smoke"] if smoke else [])
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=3600)
        runs[impl].append(json.loads(done.stdout.strip().splitlines()[-1]))
    results = {}
    for impl, outs in runs.items():
        step_s = statistics.median(t for o in outs for t in o["step_times_s"])
        results[impl] = {**outs[-1], "rounds": len(outs), "step_s_median": step_s,
                         "step_s_min": min(t for o in outs for t in o["step_times_s"]),
                         "tokens_per_s": outs[-1]["tokens_per_step"] / step_s,
                         "peak_rss_mib": max(o["peak_rss_mib"] for o in outs),
                         "step_peak_over_model_mib": max(o["step_peak_over_model_mib"] for o in outs),
                         "step_times_s": [t for o in outs for t in o["step_times_s"]]}
    ours, batched, loops = results["ours"], results["reference_batched"], results["reference_loops"]
    from vimpac_core.train.config import parse_stages

    model = parse_stages(PRESET)[0].model.model_copy(update=s["model_overrides"])
    figures = {
        "settings": {**{k: v for k, v in s.items() if k != "model_overrides"}, "threads": 1, "dropout": 0.0,
                     "dtype": "float32", "preset": str(PRESET.relative_to(REPO)),
                     **{k: getattr(model, k) for k in ("layers", "hid_dim", "layout", "pos_emb", "frame_size",
                                                       "clip_len", "vocab_size", "nce_proj_hid_dim")},
                     "smoke": smoke},
        "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "results": results,
        "speedup_vs_reference_batched": ours["tokens_per_s"] / batched["tokens_per_s"],
        "speedup_vs_reference_loops": ours["tokens_per_s"] / loops["tokens_per_s"],
        "step_peak_ratio_vs_reference_batched": ours["step_peak_over_model_mib"]
        / max(1e-9, batched["step_peak_over_model_mib"]),
    }
    out = REPO / "bench" / "out" / ("model.smoke.json" if smoke else "model.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run (< 30 s)")
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.path.insert(0, str(REPO))
        print(json.dumps(worker(args.worker, args.smoke)))
    else:
        print(json.dumps(main(args.smoke), indent=2))
