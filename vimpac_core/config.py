"""Pydantic configuration of the ingest stage.

Field names follow the original VIMPAC extraction flags (``fps``, ``frame_size`` (crop size),
short side, crop type and flip live in the view specs, ``--no-flip``), so a user of the
original scripts can carry their flags over.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vimpac_core.errors import ConfigError
from vimpac_core.tokenizers.base import parse_tokenizer_spec


class DownloadConfig(BaseModel):
    """How videos are fetched: http(s) always, other remote fsspec URLs are staged locally.

    Attributes:
        store: fsspec URL of a video store where fetched http(s) videos are kept (None: only a
            temporary local copy is made). Videos readable in place (local, s3) are never copied.
        max_bytes: refuse videos larger than this (bytes).
        timeout_s: deadline of one whole download attempt, body included (seconds).
        retries: extra attempts for transient failures (5xx, resets, timeouts).
        backoff_s: first back-off delay (seconds), doubled after each attempt.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str | None = None
    max_bytes: int = Field(default=2 * 1024**3, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=1.0, ge=0)


class IngestConfig(BaseModel):
    """Everything one ``vimpac ingest`` run needs; it is a flow parameter too.

    Attributes:
        inputs: the video list (CSV, JSONL, Parquet or mmaction2 txt; any fsspec URL).
        out: output folder (fsspec URL) for shards/, manifest/, classes.json.
        root: folder that relative uris of the list resolve against (default: the list's folder).
        list_format: force the list format instead of guessing from the suffix.
        class_index: classes of another ingest (its ``classes.json`` or output folder) so that
            this list (e.g. val) maps class names to the same indices (None: this list's own).
        fps: target frames per second (FFmpeg fps-filter selection).
        frame_size: crop size in pixels (S); views resize the short side to S or 1.25 S.
        views: a view-set name (pretrain, finetune, test) or comma-separated explicit view specs.
        flip: include flipped views in view sets that have them (``--no-flip`` for SSV2-like data).
        tokenizer: ``dalle:PATH`` or ``vqvae:PATH``.
        precision: the tokenizer's encoding precision: ``fp32`` (the release's exact codes) or
            ``bf16`` (needs native bf16 on ``device``); recorded in the tokenizer id of every row.
        device: torch device of the tokenizer.
        shard_size: videos per shard (each shard is a unit of retry).
        batch_size: frames per tokenizer batch.
        decode_window: frames decoded at a time (bounds memory per video).
        probe_timeout_s / decode_timeout_s: per-video limits (seconds).
        task_runner: ``threads`` (default) or ``dask``.
        max_workers: concurrent shard tasks (threads) or Dask workers of a local cluster.
        dask_address: address of an existing Dask scheduler (None: a local cluster).
        task_retries: Prefect retries of a shard task (transient errors only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: str
    out: str
    root: str | None = None
    list_format: Literal["csv", "jsonl", "parquet", "txt"] | None = None
    class_index: str | None = None
    fps: float = Field(default=2.0, gt=0)
    frame_size: int = Field(default=128, gt=0)
    views: str = "pretrain"
    flip: bool = True
    tokenizer: str
    precision: Literal["fp32", "bf16"] = "fp32"
    device: str = "cpu"
    shard_size: int = Field(default=64, gt=0)
    batch_size: int = Field(default=64, gt=0)
    decode_window: int = Field(default=32, gt=0)
    probe_timeout_s: float = Field(default=60.0, gt=0)
    decode_timeout_s: float = Field(default=300.0, gt=0)
    download: DownloadConfig = DownloadConfig()
    task_runner: Literal["threads", "dask"] = "threads"
    max_workers: int = Field(default=2, gt=0)
    dask_address: str | None = None
    task_retries: int = Field(default=2, ge=0)

    @field_validator("frame_size")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ConfigError(f"{value} is not a multiple of 8 (tokenizers downsample by 8)")
        return value

    @model_validator(mode="after")
    def _valid_views(self) -> IngestConfig:
        from vimpac_core.video.geometry import view_set  # the video package imports decord: only when needed

        try:
            view_set(self.views, self.frame_size, flip=self.flip)
        except ValueError as exc:
            raise ConfigError(f"--views {self.views!r}: {exc}") from exc
        return self

    @field_validator("tokenizer")
    @classmethod
    def _valid_spec(cls, value: str) -> str:
        parse_tokenizer_spec(value)
        return value

    def extraction_settings(self) -> dict:
        """The settings that change the tokens of a video (part of every shard id)."""
        return {
            "fps": self.fps,
            "frame_size": self.frame_size,
            "views": self.views,
            "flip": self.flip,
        }
