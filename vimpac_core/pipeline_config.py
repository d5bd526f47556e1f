"""PipelineConfig: the whole DAG's settings, one pydantic model composed of the stages' own configs.

    [train-tokenizer] -> ingest (once per frame size the pre-training stages need) -> pretrain

A YAML file (configs/demo.yaml) holds the parts that do not depend on where the data is:
``tokenizer`` (a spec, or absent to train our VQ-VAE), ``train_tokenizer``, ``ingest`` (IngestConfig
fields other than inputs/out/tokenizer/frame_size) and ``pretrain`` (a flat preset, as in
configs/pretrain/*.yaml, with an optional ``stage2`` mapping). ``videos`` and ``out`` usually come
from the command line. Output layout under ``out`` (local folders; ingest accepts any fsspec URL):

    out/tokenizer/            train-tokenizer output (checkpoint/, tokenizer/, metrics.json)
    out/tokens<S>/            ingest output at frame size S (shards/, manifest/, ...)
    out/pretrain/stage<i>/    pre-training stage i (checkpoints/final, ...); out/pretrain with one stage

Re-running with the same config on the same ``out`` resumes (the tokenizer continues from its
checkpoint, committed shards are reused); a changed tokenizer or ingest setting needs a new ``out``
(ingest refuses to mix tokens of two tokenizers in one folder).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vimpac_core.config import IngestConfig
from vimpac_core.errors import ConfigError
from vimpac_core.model import VimpacConfig
from vimpac_core.tokenizers.base import parse_tokenizer_spec
from vimpac_core.tokenizers.train import TrainConfig
from vimpac_core.tokenizers.vqvae import VQVAEConfig
from vimpac_core.train.config import PretrainConfig, load_yaml

# Ingest fields the pipeline sets itself.
PIPELINE_INGEST_FIELDS = ("inputs", "out", "tokenizer", "frame_size", "root")


class TokenizerTrainSettings(BaseModel):
    """Settings of the train-tokenizer stage (used when no ``tokenizer`` spec is given).

    Attributes:
        frame_size: square training frame side in pixels (multiple of 8).
        frames_per_video: frames sampled from each video.
        fps: sampling rate of those frames (frames per second).
        train: TrainConfig fields (steps, batch_size, lr, ...); ``model`` holds VQVAEConfig fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    frame_size: int = Field(64, gt=0)
    frames_per_video: int = Field(16, gt=0)
    fps: float = Field(2.0, gt=0)
    train: dict[str, Any] = Field(default_factory=dict)

    @field_validator("train")
    @classmethod
    def _valid_train(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"train_tokenizer.train: unknown field(s) {unknown}; known: {sorted(known)}")
        model = value.get("model", {})
        model_known = {f.name for f in fields(VQVAEConfig)}
        if not isinstance(model, dict) or set(model) - model_known:
            raise ValueError(f"train_tokenizer.train.model: must map VQVAEConfig fields {sorted(model_known)}")
        TrainConfig(**value)  # every range check, at construction
        return value

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.train)

    @property
    def codebook_size(self) -> int:
        return self.train_config().model.codebook_size


class PipelineConfig(BaseModel):
    """The whole pipeline. ``tokenizer`` None means: train our VQ-VAE into ``out/tokenizer`` first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    videos: str
    out: str
    root: str | None = None
    tokenizer: str | None = None
    train_tokenizer: TokenizerTrainSettings = Field(default_factory=TokenizerTrainSettings)
    ingest: dict[str, Any] = Field(default_factory=dict)
    pretrain: dict[str, Any]
    timeout_s: float | None = Field(None, gt=0)

    @field_validator("tokenizer")
    @classmethod
    def _valid_spec(cls, value: str | None) -> str | None:
        if value is not None:
            parse_tokenizer_spec(value)
        return value

    @field_validator("ingest")
    @classmethod
    def _valid_ingest(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(value) & set(PIPELINE_INGEST_FIELDS))
        if taken:
            raise ValueError(f"ingest: {taken} are set by the pipeline (use videos/out/root/tokenizer/pretrain)")
        unknown = sorted(set(value) - set(IngestConfig.model_fields))
        if unknown:
            raise ValueError(f"ingest: unknown field(s) {unknown}")
        return value

    @field_validator("pretrain")
    @classmethod
    def _valid_pretrain(cls, value: dict[str, Any]) -> dict[str, Any]:
        stage2 = value.get("stage2")
        if stage2 is not None and not isinstance(stage2, dict):
            raise ValueError("pretrain.stage2 must be a mapping of the fields stage 2 changes")
        for key in ("data", "output"):
            if key in value or (stage2 and key in stage2):
                raise ValueError(f"pretrain.{key} is set by the pipeline (data: the ingest output at the stage's "
                                 "frame size; output: OUT/pretrain[/stage<i>])")
        return value

    # ---- derived settings (pure functions of the config) ----
    def out_path(self, *parts: str) -> str:
        return "/".join([self.out.rstrip("/"), *parts])

    @property
    def tokenizer_dir(self) -> str:
        return self.out_path("tokenizer")

    def _stage_flats(self) -> list[dict[str, Any]]:
        """Flat stage dicts (data/output not yet set), stage 2 merged over stage 1."""
        flat = {k: v for k, v in self.pretrain.items() if k != "stage2"}
        if self.tokenizer is None and "vocab_size" not in flat:
            flat["vocab_size"] = self.train_tokenizer.codebook_size  # our VQ-VAE's codes are the vocabulary
        stage2 = self.pretrain.get("stage2")
        return [flat] if stage2 is None else [flat, {"different_shape": True, **flat, **stage2}]

    def frame_sizes(self) -> list[int]:
        """The distinct frame sizes of the stages, in stage order: one ingest run each."""
        sizes: list[int] = []
        for flat in self._stage_flats():
            size = _frame_size(flat)
            if size not in sizes:
                sizes.append(size)
        return sizes

    def ingest_out(self, frame_size: int) -> str:
        return self.out_path(f"tokens{frame_size}")

    def ingest_config(self, frame_size: int, tokenizer: str) -> IngestConfig:
        """The IngestConfig of the run at ``frame_size`` with tokenizer spec ``tokenizer``."""
        try:
            return IngestConfig(**self.ingest, inputs=self.videos, out=self.ingest_out(frame_size), root=self.root,
                                tokenizer=tokenizer, frame_size=frame_size)
        except ValidationError as err:
            raise ConfigError(f"ingest at frame_size {frame_size}: {err}") from None

    def pretrain_stages(self) -> list[PretrainConfig]:
        """Validated stages reading the ingest outputs; stage 2 continues stage 1's final checkpoint."""
        stages: list[PretrainConfig] = []
        flats = self._stage_flats()
        for number, flat in enumerate(flats, start=1):
            stage = dict(flat)
            stage["data"] = self.ingest_out(_frame_size(stage))
            stage["output"] = self.out_path("pretrain", f"stage{number}") if len(flats) > 1 else self.out_path("pretrain")
            if number == 2:
                stage["load"] = str(Path(stages[0].checkpoint_dir) / "final")
            stages.append(PretrainConfig.from_flat(stage))
        return stages


def _frame_size(flat: dict[str, Any]) -> int:
    return int(flat.get("frame_size", VimpacConfig.model_fields["frame_size"].default))


def load_pipeline_config(path: str | Path, **overrides: Any) -> PipelineConfig:
    """A PipelineConfig from YAML; ``overrides`` (e.g. videos=..., out=...) replace top-level keys.

    Raises ConfigError naming the file and the field when the file or a value is invalid.
    """
    data = load_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = PipelineConfig(**data)
        config.pretrain_stages()  # every stage checked before any work
    except ValidationError as err:
        raise ConfigError(f"pipeline config {str(path)!r}: {err}") from None
    except ConfigError as err:
        raise ConfigError(f"pipeline config {str(path)!r}: {err}") from None
    return config
