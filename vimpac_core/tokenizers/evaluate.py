"""How good a trained tokenizer is: PSNR of reconstructions against a per-frame mean-colour
baseline, codebook usage, and a picture of originals over reconstructions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from vimpac_core.pictures import save_png
from vimpac_core.storage import atomic_write_bytes
from vimpac_core.tokenizers.runtime import TorchTokenizer, VQVAETokenizer
from vimpac_core.tokenizers.vqvae import VQVAE

TOKENIZER_DIR = "tokenizer"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays of one shape (peak 255), over all pixels."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def mean_colour_frames(frames: np.ndarray) -> np.ndarray:
    """The baseline: each frame [N, H, W, 3] replaced by its own mean colour (uint8, same shape)."""
    means = frames.reshape(len(frames), -1, 3).mean(1).round().astype(np.uint8)
    return np.broadcast_to(means[:, None, None, :], frames.shape).copy()


def codebook_usage(codes: np.ndarray, vocab_size: int) -> float:
    """Share of the ``vocab_size`` codes that occur at least once in ``codes``."""
    return float(len(np.unique(codes)) / vocab_size)


def evaluate_tokenizer(tok: TorchTokenizer, held_out: np.ndarray, train: np.ndarray) -> tuple[dict, np.ndarray]:
    """Encode -> decode held-out frames [N, S, S, 3]; returns (metrics, reconstructions uint8).

    Metrics: psnr_db, baseline_psnr_db (mean colour), psnr_gain_db, codebook_usage (on train +
    held-out frames), codebook_usage_held_out, perplexity (held-out codes), num frames.
    """
    codes = tok.encode(held_out)
    recon = tok.decode(codes)
    all_codes = np.concatenate([codes.ravel(), tok.encode(train).ravel()]) if len(train) else codes.ravel()
    counts = np.bincount(codes.ravel(), minlength=tok.vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    ours, base = psnr(recon, held_out), psnr(mean_colour_frames(held_out), held_out)
    metrics = {
        "psnr_db": ours, "baseline_psnr_db": base, "psnr_gain_db": ours - base,
        "codebook_usage": codebook_usage(all_codes, tok.vocab_size),
        "codebook_usage_held_out": codebook_usage(codes, tok.vocab_size),
        "perplexity_held_out": float(np.exp(-(p * np.log(p)).sum())),
        "held_out_frames": len(held_out), "train_frames": len(train), "vocab_size": tok.vocab_size,
    }
    return metrics, recon


def save_comparison(originals: np.ndarray, recons: np.ndarray, path: str | os.PathLike, max_frames: int = 8) -> Path:
    """PNG with originals (top row) over reconstructions (bottom row), up to ``max_frames`` columns."""
    from PIL import Image

    n = min(max_frames, len(originals))
    top = np.concatenate(list(originals[:n]), axis=1)
    bottom = np.concatenate(list(recons[:n]), axis=1)
    return save_png(Image.fromarray(np.concatenate([top, bottom], axis=0)), path)


def export_and_report(model: VQVAE, out_dir: str | os.PathLike, train: np.ndarray, held_out: np.ndarray,
                      history: list[dict] | None = None) -> dict:
    """Publish the trained model as ``OUT/tokenizer`` (swapped in whole), evaluate it on the
    held-out frames, and write ``OUT/metrics.json`` and ``OUT/reconstructions.png``.

    Returns the metrics, with ``tokenizer_id`` and ``tokenizer_spec`` (``vqvae:OUT/tokenizer``).
    """
    out = Path(out_dir)
    final = model.save_pretrained(out / TOKENIZER_DIR)
    tok = VQVAETokenizer.from_pretrained(final)
    metrics, recon = evaluate_tokenizer(tok, held_out, train)
    metrics.update(tokenizer_id=tok.tokenizer_id, tokenizer_spec=f"vqvae:{final.resolve()}",
                   picture=str(save_comparison(held_out, recon, out / "reconstructions.png")))
    if history:
        metrics["final_train"] = history[-1]
    atomic_write_bytes(str(out / "metrics.json"), json.dumps(metrics, indent=2, sort_keys=True).encode())
    return metrics
