"""Measure a plan's rates on this machine with tiny real runs, and read the inputs of a plan.

- decode: ``decode_views`` of a sample video (one given, or a generated 10 s 320x240 clip) at
  the plan's fps and frame size, in the decoder worker process as ingest runs it.
- tokenize: the tokenizer's ``encode`` on the decoded frames (frames/s); the codes, written with
  the shard writer (Parquet, zstd), give the zstd ratio.
- train: forward + backward + AdamW steps of the stage's model at its shape on random codes
  (block-masked for pre-training), after one warm-up step.
Rates measured on a CPU describe this CPU (rates are "per GPU" in the plan's wording: here a GPU
is this machine's torch device). Synthetic clips compress differently from real footage: give a
real ``sample_video`` for a truthful zstd ratio.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vimpac_core.errors import ConfigError
from vimpac_core.model import VimpacConfig
from vimpac_core.plan.estimate import Rates, TrainStage, Workload

SAMPLE_SECONDS, SAMPLE_FPS, SAMPLE_SIZE = 10, 25, (320, 240)


def count_parameters(config: VimpacConfig, classification: bool = False) -> int:
    """Parameters of the model of ``config``, built on the meta device (no memory, no time)."""
    import torch

    from vimpac_core.model import VimpacForClassification, VimpacForPreTraining

    with torch.device("meta"):
        model = VimpacForClassification(config) if classification else VimpacForPreTraining(config)
    return sum(p.numel() for p in model.parameters())


def workload_from_list(path: str, fps: float, views: int) -> Workload:
    """A video list's count and mean duration, probing each (local) video."""
    from vimpac_core.inputs import read_video_list
    from vimpac_core.storage import is_local, local_path
    from vimpac_core.video import probe

    entries, _ = read_video_list(path)
    if not entries:
        raise ConfigError(f"list: {path!r} holds no videos")
    durations = []
    for entry in entries:
        if not is_local(entry.uri):
            raise ConfigError(f"list: {entry.uri!r} is not a local file; probing would download it; "
                              "give --videos N --mean-duration S instead")
        durations.append(probe(local_path(entry.uri)).duration_s)
    return Workload(len(entries), float(np.mean(durations)), fps, views)


def _sample_video(folder: str) -> str:
    from vimpac_core.video.synthetic import write_synthetic_video

    width, height = SAMPLE_SIZE
    return str(write_synthetic_video(Path(folder) / "sample.mp4", num_frames=SAMPLE_SECONDS * SAMPLE_FPS,
                                     fps=SAMPLE_FPS, width=width, height=height))


def measure_decode(video: str, fps: float, frame_size: int, view_spec: str = "pretrain") -> tuple[float, np.ndarray]:
    """-> (output frames/s of one decoder worker, the first view's frames uint8 [N, S, S, 3])."""
    from vimpac_core.video import decode_views, probe, view_set

    views = view_set(view_spec, frame_size)
    indices, _ = probe(video).select(fps)
    list(decode_views(video, indices[:2], views))  # start the decoder worker before timing
    start = time.perf_counter()
    windows = list(decode_views(video, indices, views))
    seconds = time.perf_counter() - start
    frames = np.concatenate([w[views[0].name] for w in windows])
    return len(indices) / seconds, frames


def measure_tokenize(tokenizer, frames: np.ndarray) -> tuple[float, np.ndarray]:
    """-> (frames/s of ``tokenizer.encode``, codes [N, S/8, S/8]); one warm-up batch first."""
    tokenizer.encode(frames[:1])
    start = time.perf_counter()
    codes = np.asarray(tokenizer.encode(frames))
    return len(frames) / (time.perf_counter() - start), codes


def measure_zstd_ratio(codes: np.ndarray) -> float:
    """Raw uint16 bytes of ``codes`` / the bytes they add to a shard (the shard writer's Parquet + zstd).

    The same row without frames is subtracted: Parquet's fixed overhead (schema, footer) would
    otherwise swamp a short sample.
    """
    from vimpac_core.shards.writer import TokenRow, rows_to_table, table_to_bytes

    def shard_bytes(part: np.ndarray) -> int:
        row = TokenRow("sample", "view", None, None, part, np.arange(len(part), dtype=np.float32), 1.0, "s", "t")
        return len(table_to_bytes(rows_to_table([row])))

    added = shard_bytes(codes) - shard_bytes(codes[:0])
    return codes.size * 2 / max(added, 1)


def measure_train(config: VimpacConfig, *, mask_blocks: int = 5, videos: int = 1, steps: int = 2,
                  finetune: bool = False) -> float:
    """Tokens/s of training steps (forward, backward, grad clip, AdamW) of the model at its shape."""
    import torch

    from vimpac_core.model import VimpacForClassification, VimpacForPreTraining, block_mask

    g = torch.Generator().manual_seed(0)
    if finetune:
        model = VimpacForClassification(config.model_copy(update={"num_labels": config.num_labels or 10}))
        codes = torch.randint(0, config.vocab_size, (videos, *config.grid_shape), generator=g)
        labels = torch.zeros(videos, dtype=torch.long)
    else:
        model = VimpacForPreTraining(config)
        codes = torch.randint(0, config.vocab_size, (2 * videos, *config.grid_shape), generator=g)
        codes, labels = block_mask(codes, mask_blocks, config.pad_id, config.mask_id, g)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(codes, labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return codes.numel() * steps / (time.perf_counter() - start)


def calibrate(*, tokenizer_spec: str, fps: float, frame_sizes: list[int], stages: list[tuple[TrainStage, VimpacConfig]],
              sample_video: str | None = None, steps: int = 2, progress: Callable[[str], None] = print) -> Rates:
    """Measure every rate a plan needs on this machine; ``stages``: (plan stage, its model config)."""
    from vimpac_core.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_spec)
    decode_rates, tokenize, ratios = [], {}, []
    with tempfile.TemporaryDirectory(prefix="vimpac-plan-") as tmp:
        video = sample_video or _sample_video(tmp)
        for size in frame_sizes:
            progress(f"calibrating decode and tokenize at {size}px on {Path(video).name}")
            rate, frames = measure_decode(video, fps, size)
            decode_rates.append(rate)
            tokenize[size], codes = measure_tokenize(tokenizer, frames)
            ratios.append(measure_zstd_ratio(codes))
    train = {}
    for stage, config in stages:
        progress(f"calibrating {stage.name}: {steps} training steps at {config.frame_size}px")
        train[stage.name] = measure_train(config, steps=steps, finetune=stage.clips_per_video == 1)
    return Rates(source=f"measured on this machine ({tokenizer_spec.split(':')[0]} tokenizer)",
                 decode_frames_per_s=min(decode_rates), tokenize_frames_per_s=tokenize,
                 train_tokens_per_s=train, zstd_ratio=float(np.mean(ratios)))
