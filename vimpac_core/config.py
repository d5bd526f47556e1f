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
    """How videos are fetched: http(s) always, other remote fsspec URLs are staged locally."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str | None = Field(
        default=None,
        description="fsspec URL of a video store keeping fetched http(s) videos (None: a temporary local copy only); "
        "videos readable in place (local, s3) are never copied.",
    )
    max_bytes: int = Field(default=2 * 1024**3, gt=0, description="Refuse videos larger than this many bytes.")
    timeout_s: float = Field(default=60.0, gt=0, description="Deadline in seconds of one whole download attempt, body included.")
    retries: int = Field(default=3, ge=0, description="Extra attempts after a transient failure (5xx, reset, timeout).")
    backoff_s: float = Field(default=1.0, ge=0, description="First back-off delay in seconds, doubled after each attempt.")


class IngestConfig(BaseModel):
    """Everything one ``vimpac ingest`` run needs; it is a flow parameter too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: str = Field(description="The video list: CSV, JSONL, Parquet or mmaction2 txt (any fsspec URL).")
    out: str = Field(description="Output folder (fsspec URL) for shards/, manifest/ and classes.json.")
    root: str | None = Field(
        default=None, description="Folder the list's relative uris resolve against; None: the list's folder."
    )
    list_format: Literal["csv", "jsonl", "parquet", "txt"] | None = Field(
        default=None, description="Format of the list; None: guessed from its suffix."
    )
    class_index: str | None = Field(
        default=None,
        description="classes.json (or output folder) of another ingest, so this list (e.g. val) maps class names "
        "to the same indices; None: this list's own classes.",
    )
    fps: float = Field(default=2.0, gt=0, description="Frames per second kept from each video (FFmpeg fps-filter selection).")
    frame_size: int = Field(
        default=128, gt=0, description="Crop size S in pixels (a multiple of 8); views resize the short side to S or 1.25 S."
    )
    views: str = Field(
        default="pretrain",
        description="A view-set name (pretrain, finetune, test) or comma-separated explicit view specs.",
    )
    flip: bool = Field(
        default=True, description="Include the flipped views of view sets that have them (--no-flip for SSV2-like data)."
    )
    tokenizer: str = Field(description="Tokenizer spec: dalle:PATH or vqvae:PATH.")
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description="Tokenizer precision: fp32 (the release's exact codes) or bf16 (needs native bf16 on device); "
        "recorded in every row's tokenizer id.",
    )
    device: str = Field(default="cpu", description="Torch device of the tokenizer (cpu, cuda, cuda:1...).")
    shard_size: int = Field(default=64, gt=0, description="Videos per shard (each shard is one unit of retry).")
    batch_size: int = Field(default=64, gt=0, description="Frames per tokenizer batch.")
    decode_window: int = Field(default=32, gt=0, description="Frames decoded at a time (bounds memory per video).")
    probe_timeout_s: float = Field(default=60.0, gt=0, description="Limit in seconds to probe one video.")
    decode_timeout_s: float = Field(
        default=300.0, gt=0, description="Seconds the decoder may take over one whole video before it is killed."
    )
    download: DownloadConfig = Field(
        default=DownloadConfig(), description="How remote videos are fetched (DownloadConfig fields)."
    )
    task_runner: Literal["threads", "dask"] = Field(
        default="threads", description="Runs shard tasks on threads or on Dask (a local cluster or dask_address)."
    )
    max_workers: int = Field(default=2, gt=0, description="Concurrent shard tasks (threads) or workers of a local Dask cluster.")
    dask_address: str | None = Field(
        default=None, description="Address of an existing Dask scheduler; None: start a local cluster."
    )
    task_retries: int = Field(default=2, ge=0, description="Prefect retries of a shard task (transient errors only).")

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
