"""Prefect tasks of the train-tokenizer stage: thin wrappers over ``vimpac_core.tokenizers``.

Frame sampling retries on transient errors only; training, when retried, resumes from its last
checkpoint instead of starting over. Tasks exchange paths, not arrays: the sampled frames are
written once to ``OUT/frames.npz`` (plain arrays, loaded without pickle) and read by the next tasks,
wherever they run.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from vimpac_core.inputs import read_video_list
from vimpac_core.storage import atomic_write_bytes
from vimpac_core.tokenizers.evaluate import export_and_report
from vimpac_core.tokenizers.frames import sample_frames, split_held_out
from vimpac_core.tokenizers.train import TrainConfig, train_vqvae
from vimpac_tasks.retry import only_transient


@task(name="sample-frames", retries=2, retry_delay_seconds=2, retry_condition_fn=only_transient,
      cache_policy=NO_CACHE, persist_result=False)
def sample_frames_task(video_list: str, frame_size: int, fps: float, frames_per_video: int,
                       out_dir: str, root: str | None = None) -> str:
    """Video list -> path of ``OUT/frames.npz`` holding ``train`` uint8 [N1, S, S, 3] and
    ``held_out`` uint8 [N2, S, S, 3]."""
    logger = get_run_logger()
    entries, _ = read_video_list(video_list, root=root)
    frames, owners = sample_frames(entries, frame_size, fps, frames_per_video,
                                   on_skip=lambda e, exc: logger.warning("skipped %s: %s", e.uri, exc))
    train, held_out = split_held_out(frames, owners)
    logger.info("%d frames from %d videos: %d to train, %d held out", len(frames), len(set(owners.tolist())),
                len(train), len(held_out))
    path = Path(out_dir) / FRAMES_FILE
    buffer = io.BytesIO()
    np.savez(buffer, train=train, held_out=held_out)
    atomic_write_bytes(str(path), buffer.getvalue())
    return str(path)


FRAMES_FILE = "frames.npz"


def load_frames(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, held_out) frames written by ``sample_frames_task``."""
    with np.load(path, allow_pickle=False) as data:
        return data["train"], data["held_out"]


@task(name="train-vqvae", retries=1, retry_condition_fn=only_transient, cache_policy=NO_CACHE,
      persist_result=False)
def train_task(frames_path: str, out_dir: str, cfg: TrainConfig, resume: bool) -> list[dict]:
    """Train (resuming on a retry) and return the logged history.

    Only transient errors are retried: a refusal such as "already holds a checkpoint, pass
    --resume" must reach the user, not be retried into a silent resume.
    """
    logger = get_run_logger()
    train_frames, _ = load_frames(frames_path)
    again = (task_run.run_count or 1) > 1
    _, history = train_vqvae(train_frames, out_dir, cfg, resume=resume or again, log_fn=logger.info)
    return history


@task(name="report-tokenizer", cache_policy=NO_CACHE, persist_result=False)
def report_task(out_dir: str, frames_path: str, history: list[dict]) -> dict:
    """Export OUT/tokenizer, evaluate on held-out frames, publish metrics as artifacts."""
    from vimpac_core.tokenizers.train import CHECKPOINT_DIR
    from vimpac_core.tokenizers.vqvae import VQVAE

    train_frames, held_out = load_frames(frames_path)
    model = VQVAE.from_pretrained(f"{out_dir}/{CHECKPOINT_DIR}")
    metrics = export_and_report(model, out_dir, train_frames, held_out, history)
    create_table_artifact(table=history or [{"step": 0}], description="train-tokenizer: loss / perplexity / codebook usage")
    create_markdown_artifact(
        markdown=(f"**{metrics['tokenizer_id'][:22]}...**\n\n| metric | value |\n|---|---|\n"
                  + "".join(f"| {k} | {metrics[k]:.4g} |\n" for k in
                            ("psnr_db", "baseline_psnr_db", "psnr_gain_db", "codebook_usage", "perplexity_held_out"))
                  + f"\n\nPicture: `{metrics['picture']}`; tokenizer: `{metrics['tokenizer_spec']}`"),
        description="train-tokenizer: held-out reconstruction quality")
    return metrics
