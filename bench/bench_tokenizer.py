"""Tokenizer throughput on CPU (fp32): our DALL-E encoder against the `DALL-E` package's, and our
VQ-VAE's encode.

Both DALL-E encoders hold the same random weights and see the same uint8 frames; each side runs
the whole path frames -> codes (the release's input transform, forward, argmax), the package
under ``torch.no_grad`` as its own examples do, ours through ``DalleTokenizer.encode`` in both modes
(default: the package's ops and layout, bit-identical logits; ``fast``: oneDNN with prepacked
weights). Runs are interleaved (ours, package, ours, ...) so load from other processes hits both
alike; figures are medians over repeats. The default path's codes must equal the package's (the
run fails otherwise). A roofline figure puts the speed in context: the encoder's multiply-adds
per frame, the GFLOP/s each path reaches, and this core's fp32 matrix-multiply peak (a large
sgemm) in the same run. bf16 against fp32 (speed, code agreement): ``bench_precision.py``.

    python -m bench.bench_tokenizer [--smoke]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import attr
import numpy as np
import torch

from vimpac_core.tokenizers import VQVAE, VQVAEConfig, VQVAETokenizer
from vimpac_core.tokenizers.dalle import DalleEncoder
from vimpac_core.tokenizers.dalle_io import DalleTokenizer

OUT = Path(__file__).resolve().parent / "out"


def package_encode(encoder: torch.nn.Module, frames: np.ndarray) -> np.ndarray:
    """The baseline: the release's transform then the package's encoder, argmax."""
    from dall_e import map_pixels

    with torch.no_grad():
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        x = (x - 0.5) / 0.5
        x = x * 0.5 + 0.5
        return encoder(map_pixels(x)).argmax(1).numpy()


def frames_per_second(fn, n_frames: int) -> tuple[float, float]:
    """(frames per wall-clock second, frames per CPU second of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return n_frames / (time.perf_counter() - wall), n_frames / (time.process_time() - cpu)


def bench_dalle(n_hid: int, vocab: int, size: int, n_frames: int, repeats: int) -> dict:
    from dall_e import Encoder

    torch.manual_seed(0)
    with attr.validators.disabled():
        ref = Encoder(n_hid=n_hid, vocab_size=vocab, use_mixed_precision=False)
    ours = DalleEncoder(n_hid=n_hid, vocab_size=vocab)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.source_sha256 = "0" * 64
    fast = DalleTokenizer(ours, batch_size=n_frames, fast=True)  # oneDNN, prepacked weights
    twin = DalleEncoder(n_hid=n_hid, vocab_size=vocab)
    twin.load_state_dict(ref.state_dict(), strict=True)
    twin.source_sha256 = "0" * 64
    default = DalleTokenizer(twin, batch_size=n_frames)
    frames = np.random.default_rng(0).integers(0, 256, (n_frames, size, size, 3), dtype=np.uint8)
    runs = {"default": lambda: default.encode(frames), "fast": lambda: fast.encode(frames),
            "package": lambda: package_encode(ref, frames)}
    codes = {name: run() for name, run in runs.items()}  # also warms every path up
    if not np.array_equal(codes["default"], codes["package"]):
        raise AssertionError(f"{size}px: the default DALL-E path's codes differ from the package's")
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            w, c = frames_per_second(run, n_frames)
            wall[name].append(w)
            cpu[name].append(c)
    wmed = {name: statistics.median(v) for name, v in wall.items()}
    cmed = {name: statistics.median(v) for name, v in cpu.items()}
    gmac = encoder_macs(ours, size) / 1e9
    return {"n_hid": n_hid, "vocab_size": vocab, "frame_size": size, "frames": n_frames, "repeats": repeats,
            "codes_identical_default": True,  # checked above
            "codes_identical_fast": bool(np.array_equal(codes["fast"], codes["package"])),
            "frames_per_s": {k: round(v, 3) for k, v in wmed.items()},
            "frames_per_cpu_s": {k: round(v, 3) for k, v in cmed.items()},
            "speedup_default": round(wmed["default"] / wmed["package"], 3),
            "speedup_fast": round(wmed["fast"] / wmed["package"], 3),
            "speedup_default_cpu_time": round(cmed["default"] / cmed["package"], 3),
            "speedup_fast_cpu_time": round(cmed["fast"] / cmed["package"], 3),
            "per_repeat_speedup_fast": [round(a / b, 3) for a, b in zip(wall["fast"], wall["package"], strict=True)],
            "gmac_per_frame": round(gmac, 3),
            "gflop_per_s": {k: round(2 * gmac * v, 1) for k, v in wmed.items()}}


def encoder_macs(encoder: DalleEncoder, size: int) -> int:
    """Multiply-adds of one frame through the encoder's convolutions (shapes only, on the meta device)."""
    from vimpac_core.tokenizers.dalle import Conv2d

    total = 0

    def count(module, _inputs, out):
        nonlocal total
        total += out.shape[2] * out.shape[3] * module.w[0].numel() * module.w.shape[0]

    meta = DalleEncoder(n_hid=encoder.n_hid, vocab_size=encoder.vocab_size).to("meta")
    hooks = [m.register_forward_hook(count) for m in meta.modules() if isinstance(m, Conv2d)]
    meta(torch.empty(1, 3, size, size, device="meta"))
    for h in hooks:
        h.remove()
    return total


def sgemm_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This core's fp32 matrix-multiply rate (GFLOP/s, best of ``repeats``): the practical ceiling
    of any exact fp32 convolution on it."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def bench_vqvae(size: int, n_frames: int, repeats: int) -> dict:
    torch.manual_seed(0)
    cfg = VQVAEConfig()  # the defaults `vimpac train-tokenizer` starts from, less the CLI's widths
    tok = VQVAETokenizer(VQVAE(cfg), "0" * 64, batch_size=64)
    frames = np.random.default_rng(1).integers(0, 256, (n_frames, size, size, 3), dtype=np.uint8)
    tok.encode(frames[:2])
    fps = [frames_per_second(lambda: tok.encode(frames), n_frames)[0] for _ in range(repeats)]
    return {"config": {"codebook_size": cfg.codebook_size, "channels": list(cfg.channels),
                       "embed_dim": cfg.embed_dim, "num_res_blocks": cfg.num_res_blocks},
            "frame_size": size, "frames": n_frames, "frames_per_s": round(statistics.median(fps), 2)}


def main(smoke: bool = False, threads: int = 1) -> dict:
    """Figures as a dict; also written to bench/out/tokenizer[.smoke].json by the CLI.

    One intra-op thread by default: on a shared box, per-core figures (and CPU-time ones) are the
    ones that stay comparable between runs.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        peak = sgemm_peak_gflops(n=512 if smoke else 2048)
        if smoke:
            dalle = bench_dalle(n_hid=32, vocab=512, size=32, n_frames=2, repeats=3)
            vqvae = bench_vqvae(size=64, n_frames=16, repeats=3)
        else:
            dalle = {f"{size}px": bench_dalle(n_hid=256, vocab=8192, size=size, n_frames=4, repeats=3)
                     for size in (64, 128)}
            vqvae = bench_vqvae(size=128, n_frames=128, repeats=5)
    finally:
        torch.set_num_threads(previous)
    return {"device": "cpu", "dtype": "fp32", "torch_threads": threads, "sgemm_peak_gflop_per_s": round(peak, 1),
            "dalle_encoder": dalle, "vqvae_encode": vqvae}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="reduced width and frames (< 30 s)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    figures = main(smoke=args.smoke, threads=args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    name = "tokenizer.smoke.json" if args.smoke else "tokenizer.json"
    (OUT / name).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
