"""FinetuneConfig (one fine-tuning run) and EvaluateConfig (multi-view test of a checkpoint).

Flat like the pre-training presets: model fields (VimpacConfig's) mix in with the rest; defaults
are the release's fine-tuning scripts (FINETUNE.md 4: lr 1e-4, wd 0.01, betas 0.9/0.999, warm-up
0.1, linear schedule, bs 4 per GPU). The backbone's architecture and vocabulary come from the
``load`` checkpoint (`resolve.resolve_finetune` fills them in before any work); the run's own
clip_len / frame_size must match it unless ``different_shape``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vimpac_core.config_base import describe_validation_error
from vimpac_core.errors import ConfigError
from vimpac_core.train.config import TrainConfigBase, local_folder

ClipPosition = Literal["start", "center"]


def clip_list(value: Any) -> Any:
    """'2,5,10' (the original flag's form) or 5 -> a list of ints; lists pass through."""
    if isinstance(value, str):
        return [int(v) for v in value.replace(" ", "").split(",") if v]
    if isinstance(value, int):
        return [value]
    return value


def positive_counts(value: list[int], field: str) -> list[int]:
    if any(v < 1 for v in value):
        raise ValueError(f"{field}: clip counts must be >= 1, got {value}")
    return value


class FinetuneConfig(TrainConfigBase):
    """Fine-tune VimpacForClassification on labelled token shards, evaluating as it goes."""

    KIND: ClassVar[str] = "fine-tuning"
    ENTRY: ClassVar[str] = "vimpac_core.train.finetune"

    dataset: str = Field("generic", description="Free-text dataset name (ucf101, ssv2...) shown in reports and metrics.")
    train_views: list[str] | None = Field(
        None, description="Views a training sample is drawn from (one at random per sample); None: every view the video has."
    )
    test_data: str | None = Field(
        None, description="Token shards of the test set (fsspec URL); None: the training folder, filtered by test_split."
    )
    test_split: str | None = Field(None, description="Split of the test shards to evaluate; None: all their videos.")
    test_views: list[str] | None = Field(
        None, description="Views every test video contributes (softmax averaged over views x clips); "
        "None: the views every test video has."
    )
    val_data: str | None = Field(
        None, description="Validation shards whose top-1 picks the best epoch (<output>/best; never the test set); None: none."
    )
    val_split: str | None = Field(None, description="Split of val_data to evaluate; None: all its videos.")
    num_test_clips: int = Field(1, ge=1, description="Temporal clips per test video in every evaluation.")
    last_test_clips: list[int] = Field(
        default_factory=list, description="More clip counts evaluated after training, e.g. 2,5,10 (a list or comma-separated)."
    )
    test_clip_position: ClipPosition = Field(
        "start", description="Where a single test clip sits: start (as released) or center; 2+ clips are evenly spaced."
    )
    eval_per_epochs: int = Field(1, ge=1, description="Evaluate every this many epochs, and always after the last one.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy loss (0: none).")
    # The release's fine-tuning defaults.
    lr: float = Field(1e-4, gt=0, description="Peak learning rate of AdamW.")
    beta2: float = Field(0.999, ge=0, lt=1, description="AdamW beta2.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (none on biases and LayerNorm weights).")
    epochs: int = Field(50, ge=1, description="Passes over the training videos.")
    bs_per_gpu: int = Field(4, ge=1, description="Videos per micro-batch on each rank (also the test batch).")

    @field_validator("last_test_clips", mode="before")
    @classmethod
    def _clip_list(cls, value: Any) -> Any:
        return clip_list(value)

    @field_validator("last_test_clips")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        return positive_counts(value, "last_test_clips")

    @property
    def test_url(self) -> str:
        return self.test_data or self.data

    def final_clip_counts(self) -> list[int]:
        """The clip counts of the evaluation after training: num_test_clips, then last_test_clips."""
        return list(dict.fromkeys([self.num_test_clips, *self.last_test_clips]))

    def eval_config(self, checkpoint: str, output: str, num_test_clips: list[int], *, val: bool = False) -> EvaluateConfig:
        """The evaluation of ``checkpoint`` on this run's test (or validation) set."""
        return EvaluateConfig(
            checkpoint=checkpoint, data=(self.val_data if val else self.test_url) or self.test_url,
            split=self.val_split if val else self.test_split, views=self.test_views, output=output,
            num_test_clips=num_test_clips, clip_position=self.test_clip_position, frame_rate=self.frame_rate,
            bs_per_gpu=self.bs_per_gpu, nproc_per_node=self.nproc_per_node, device=self.device,
            num_workers=self.num_workers, storage_options=self.storage_options, dataset=self.dataset,
            cache_row_groups=self.cache_row_groups, tag="val" if val else "test",
        )


class EvaluateConfig(BaseModel):
    """Multi-view test of one checkpoint: per video, softmax averaged over views x clips."""

    model_config = ConfigDict(extra="forbid")
    KIND: ClassVar[str] = "evaluation"
    ENTRY: ClassVar[str] = "vimpac_core.train.evaluate"

    checkpoint: str = Field(description="Local folder of the fine-tuned model to test (a checkpoint or model folder).")
    data: str = Field(description="Labelled token shards of the test set (any fsspec URL).")
    split: str | None = Field(None, description="Split of data to evaluate; None: all its videos.")
    views: list[str] | None = Field(
        None, description="Views every test video contributes; None: the views every test video has."
    )
    output: str = Field(description="Local folder for metrics.json, per clip count predictions, and tensorboard/.")
    num_test_clips: list[int] = Field(
        default_factory=lambda: [1], description="Temporal clip counts per video, one evaluation each (e.g. 1,2,5,10)."
    )
    clip_position: ClipPosition = Field(
        "start", description="Where a single clip sits: start (as released) or center; 2+ clips are evenly spaced."
    )
    frame_rate: int = Field(2, ge=1, description="Stride between a clip's frames, in token frames (as in training).")
    bs_per_gpu: int = Field(4, ge=1, description="Videos per batch on each rank.")
    nproc_per_node: int = Field(1, ge=1, description="Evaluation processes (ranks) torchrun starts.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Device of each rank: cpu, cuda, or auto (cuda when present).")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes per rank (0: load in the main process).")
    cache_row_groups: int = Field(4, ge=1, description="Decoded Parquet row groups each data worker keeps in memory (LRU).")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for reading data.")
    dataset: str = Field("generic", description="Free-text dataset name recorded in metrics.json.")
    tag: str = Field("test", description="Prefix of the TensorBoard and metrics names (e.g. test, val).")

    @field_validator("num_test_clips", mode="before")
    @classmethod
    def _clip_list(cls, value: Any) -> Any:
        return clip_list(value)

    @field_validator("num_test_clips")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("num_test_clips: give at least one clip count")
        return positive_counts(value, "num_test_clips")

    @field_validator("checkpoint", "output")
    @classmethod
    def _local(cls, value: str, info: Any) -> str:
        return local_folder(value, info.field_name)

    @property
    def checkpoint_dir(self) -> str:  # what the launcher's resume look-up asks; evaluation has none
        return str(Path(self.output) / "checkpoints")

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> EvaluateConfig:
        try:
            return cls(**values)
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, cls.KIND)) from None

    def to_flat(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
