"""Ingest benchmarks.

1. Ingest efficiency: end-to-end frames/s of ``process_shard`` (stage, probe, FPS select, decode
   in a worker process overlapped with batched encode, shard + manifest writes) divided by
   tokenizer-only frames/s (``encode`` on the very same frames, decoded beforehand). Goal >= 0.9.
   The tokenizer is our real VQ-VAE (random weights; weights do not change the cost) at a width
   where encoding dominates, as the DALL-E dVAE does in production (34 GMAC per 128x128 frame).
   Measured twice: the encoder on every core (the decoder worker then takes CPU from it), and the
   encoder on all cores but one (the decoder has a core of its own, as on a GPU worker, where
   encoding does not use the CPU). Both ratios compare runs with the same thread count.
2. Orchestration overhead: the Prefect ``ingest`` flow (ephemeral server, one thread worker)
   against a plain loop of the same library calls (``prepare_output`` + ``process_shard``), on
   many small videos with a tiny tokenizer, so that per-task overhead is what shows.

    python -m bench.bench_ingest [--smoke]
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _clips(folder: Path, n: int, frames: int, width: int, height: int) -> list[Path]:
    from vimpac_core.video import write_synthetic_video

    return [write_synthetic_video(folder / f"v{i:04d}.mp4", num_frames=frames, fps=25, width=width,
                                  height=height, seed=i) for i in range(n)]


def _vqvae(folder: Path, channels: tuple[int, int, int], blocks: int) -> str:
    from vimpac_core.tokenizers import VQVAE, VQVAEConfig

    torch.manual_seed(0)
    VQVAE(VQVAEConfig(codebook_size=1024, embed_dim=64, channels=channels, num_res_blocks=blocks)).save_pretrained(folder)
    return f"vqvae:{folder}"


def _list(folder: Path, clips: list[Path]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "list.csv"
    path.write_text("uri\n" + "".join(f"{c}\n" for c in clips))
    return str(path)


def _decoded_frames(clips: list[Path], cfg) -> np.ndarray:
    """The frames process_shard will encode, decoded once up front: uint8 [N, S, S, 3]."""
    from vimpac_core.video import decode_views, probe, view_set

    views = view_set(cfg.views, cfg.frame_size, flip=cfg.flip)
    out = []
    for clip in clips:
        indices, _ = probe(clip).select(cfg.fps)
        for window in decode_views(clip, indices, views, window=cfg.decode_window):
            out.extend(window.values())
    return np.concatenate(out)


def efficiency(work: Path, smoke: bool, threads: int) -> dict:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {"torch_threads": threads, **_efficiency(work, smoke)}
    finally:
        torch.set_num_threads(previous)


def _efficiency(work: Path, smoke: bool) -> dict:
    from vimpac_core.config import IngestConfig
    from vimpac_core.ingest import get_tokenizer, prepare_output, process_shard

    n, frames, repeats = (3, 24, 1) if smoke else (6, 100, 5)
    clips = _clips(work / "eff", n, frames, 320, 240)
    spec = _vqvae(work / "tok-big", (64, 128, 256), 2)
    out = Path(tempfile.mkdtemp(prefix="eff-out-", dir=work))
    cfg = IngestConfig(inputs=_list(work / "eff", clips), out=str(out), tokenizer=spec,
                       fps=12.5, frame_size=128, batch_size=16, shard_size=n)
    tok = get_tokenizer(spec, "cpu", cfg.batch_size)
    frames_all = _decoded_frames(clips, cfg)
    tok.encode(frames_all[: cfg.batch_size])  # warm-up (oneDNN kernels)
    plan = prepare_output(cfg, tok.tokenizer_id)
    e2e, only, ratios = [], [], []
    for r in range(repeats):  # alternate the order so that load from elsewhere hits both alike
        for which in (("only", "e2e") if r % 2 == 0 else ("e2e", "only")):
            t = time.perf_counter()
            if which == "only":
                tok.encode(frames_all)
                only.append(len(frames_all) / (time.perf_counter() - t))
            else:
                stats = process_shard(plan.shards[0], cfg, tok)
                e2e.append(stats["frames"] / (time.perf_counter() - t))
                assert stats["frames"] == len(frames_all), (stats, len(frames_all))
        ratios.append(e2e[-1] / only[-1])
    end_to_end, tokenizer_only = statistics.median(e2e), statistics.median(only)
    return {
        "videos": n, "frames": int(len(frames_all)), "frame_size": cfg.frame_size, "repeats": repeats,
        "tokenizer": "VQ-VAE channels (64,128,256), 2 res blocks, 1024 codes",
        "end_to_end_frames_per_s": round(end_to_end, 2), "tokenizer_only_frames_per_s": round(tokenizer_only, 2),
        "efficiency": round(statistics.median(ratios), 3),
        "efficiency_per_repeat": [round(x, 3) for x in ratios],
    }


def overhead(work: Path, smoke: bool) -> dict:
    from vimpac_core.config import IngestConfig
    from vimpac_core.ingest import get_tokenizer, prepare_output, process_shard
    from vimpac_flows.ingest import run_ingest

    n, shard_size = (16, 4) if smoke else (200, 4)
    clips = _clips(work / "small", n, 6, 32, 32)
    spec = _vqvae(work / "tok-tiny", (4, 8, 8), 0)
    base = dict(inputs=_list(work / "small", clips), tokenizer=spec, fps=4.0, frame_size=32, batch_size=16,
                shard_size=shard_size, max_workers=1)
    tok = get_tokenizer(spec, "cpu", 16)
    t = time.perf_counter()  # warm-up: starts the ephemeral Prefect server, not counted below
    run_ingest(IngestConfig(out=str(work / "warm-out"), **{**base, "inputs": _list(work / "small" / "warm", clips[:1])}))
    startup_s = time.perf_counter() - t
    loops, flows = [], []
    for r in range(1 if smoke else 2):  # fresh output folders each time: nothing is skipped
        for which in (("loop", "flow") if r % 2 == 0 else ("flow", "loop")):
            cfg = IngestConfig(out=str(work / f"{which}-out-{r}"), **base)
            t = time.perf_counter()
            if which == "loop":
                for shard in prepare_output(cfg, tok.tokenizer_id).shards:
                    process_shard(shard, cfg, tok)
                loops.append(time.perf_counter() - t)
            else:
                summary = run_ingest(cfg)
                flows.append(time.perf_counter() - t)
                assert summary["ok"] == n and summary["skipped_shards"] == 0, summary
    loop_s, flow_s = statistics.median(loops), statistics.median(flows)
    tasks = summary["shards"]
    return {
        "videos": n, "shard_tasks": tasks, "task_runner": "threads, max_workers=1",
        "plain_loop_s": round(loop_s, 2), "prefect_flow_s": round(flow_s, 2),
        "flow_over_loop": round(flow_s / loop_s, 2), "overhead_per_task_s": round((flow_s - loop_s) / tasks, 3),
        "first_flow_run_with_server_start_s": round(startup_s, 2),
    }


def main(smoke: bool = False) -> dict:
    home = tempfile.mkdtemp(prefix="vimpac-bench-prefect-")
    os.environ.setdefault("PREFECT_HOME", home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    with tempfile.TemporaryDirectory(prefix="vimpac-bench-ingest-") as tmp:
        work = Path(tmp)
        cpus = os.cpu_count() or 1
        figures = {"efficiency_shared_cores": efficiency(work, smoke, cpus),
                   "efficiency_decoder_core": efficiency(work, smoke, max(1, cpus - 1)),
                   "orchestration": overhead(work, smoke)}
    from vimpac_core.video import shutdown_workers

    shutdown_workers()
    figures["cpus"] = os.cpu_count()
    return figures


if __name__ == "__main__":
    from bench.run_all import run_script

    run_script("ingest", main, __doc__, "tiny inputs, one repeat")
