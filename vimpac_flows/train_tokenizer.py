"""Flow of the train-tokenizer stage: video list -> trained VQ-VAE in ``OUT/tokenizer``.

sample frames (shared decode path) -> train with atomic checkpoints (resumable) -> export,
evaluate on held-out frames, write ``metrics.json`` and ``reconstructions.png``. Use the result
with ``vimpac ingest --tokenizer vqvae:OUT/tokenizer``.
"""

from __future__ import annotations

from prefect import flow

from vimpac_core.tokenizers.train import TrainConfig
from vimpac_tasks.tokenizer import report_task, sample_frames_task, train_task


@flow(name="train-tokenizer", log_prints=True)
def train_tokenizer_flow(video_list: str, out_dir: str, train: TrainConfig | None = None, frame_size: int = 64,
                         frames_per_video: int = 16, fps: float = 2.0, resume: bool = False,
                         root: str | None = None) -> dict:
    """Train our VQ-VAE tokenizer on frames of ``video_list``; returns the evaluation metrics."""
    cfg = train or TrainConfig()
    frames_path = sample_frames_task(video_list, frame_size, fps, frames_per_video, out_dir, root)
    history = train_task(frames_path, out_dir, cfg, resume)
    return report_task(out_dir, frames_path, history)
