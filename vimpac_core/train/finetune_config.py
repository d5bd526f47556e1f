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

    dataset: str = "generic"  # a free-text name (ucf101, ssv2...): reports and presets
    train_views: list[str] | None = None  # None: every view the video has
    test_data: str | None = None  # None: the training folder (filtered by test_split)
    test_split: str | None = None
    test_views: list[str] | None = None  # None: the views every test video has
    val_data: str | None = None  # a validation set picks the best epoch (never the test set)
    val_split: str | None = None
    num_test_clips: int = Field(1, ge=1)
    last_test_clips: list[int] = Field(default_factory=list)
    test_clip_position: ClipPosition = "start"
    eval_per_epochs: int = Field(1, ge=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # The release's fine-tuning defaults.
    lr: float = Field(1e-4, gt=0)
    beta2: float = Field(0.999, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    epochs: int = Field(50, ge=1)
    bs_per_gpu: int = Field(4, ge=1)

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

    checkpoint: str
    data: str
    split: str | None = None
    views: list[str] | None = None
    output: str
    num_test_clips: list[int] = Field(default_factory=lambda: [1])  # one evaluation per clip count
    clip_position: ClipPosition = "start"
    frame_rate: int = Field(2, ge=1)
    bs_per_gpu: int = Field(4, ge=1)
    nproc_per_node: int = Field(1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(2, ge=0)
    cache_row_groups: int = Field(4, ge=1)
    storage_options: dict[str, Any] = Field(default_factory=dict)
    dataset: str = "generic"
    tag: str = "test"  # TensorBoard / metrics prefix

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
