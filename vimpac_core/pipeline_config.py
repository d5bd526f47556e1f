"""PipelineConfig: the whole DAG's settings, one pydantic model composed of the stages' own configs.

    [train-tokenizer] -> ingest (once per frame size the pre-training stages need) -> pretrain
        -> per fine-tune task: ingest its labelled list -> fine-tune + evaluate (or a sweep)

A YAML file (configs/demo.yaml) holds the parts that do not depend on where the data is:
``tokenizer`` (a spec, or absent to train our VQ-VAE), ``train_tokenizer``, ``ingest`` (IngestConfig
fields other than inputs/out/tokenizer/frame_size) and ``pretrain`` (a flat preset, as in
configs/pretrain/*.yaml, with an optional ``stage2`` mapping). ``videos`` and ``out`` usually come
from the command line. Output layout under ``out`` (local folders; ingest accepts any fsspec URL):

    out/tokenizer/            train-tokenizer output (checkpoint/, tokenizer/, metrics.json)
    out/tokens<S>/            ingest output at frame size S (shards/, manifest/, ...)
    out/pretrain/stage<i>/    pre-training stage i (checkpoints/final, ...); out/pretrain with one stage
    out/tasks/<name>/tokens<S>/   a fine-tune task's labelled videos as token shards
    out/tasks/<name>/finetune/    fine-tuning from the last pre-training stage (+ eval/)
    out/tasks/<name>/scratch/     the same fine-tuning from random weights (``compare_scratch``)
    out/tasks/<name>/sweep/       a sweep's runs and results table (a task with ``sweep``)

Re-running with the same config on the same ``out`` resumes (the tokenizer continues from its
checkpoint, committed shards are reused); a changed tokenizer or ingest setting needs a new ``out``
(ingest refuses to mix tokens of two tokenizers in one folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vimpac_core.config import IngestConfig
from vimpac_core.errors import ConfigError
from vimpac_core.model import VimpacConfig
from vimpac_core.tokenizers.base import parse_tokenizer_spec
from vimpac_core.tokenizers.train import TrainConfig
from vimpac_core.tokenizers.vqvae import VQVAEConfig
from vimpac_core.train.config import PretrainConfig, chain_stages, load_yaml
from vimpac_core.train.finetune_config import FinetuneConfig

# Ingest fields the pipeline sets itself.
PIPELINE_INGEST_FIELDS = ("inputs", "out", "tokenizer", "frame_size", "root")


class TokenizerTrainSettings(BaseModel):
    """Settings of the train-tokenizer stage (used when no ``tokenizer`` spec is given)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frame_size: int = Field(64, gt=0, description="Side in pixels of the square training frames (a multiple of 8).")
    frames_per_video: int = Field(16, gt=0, description="Frames sampled from each video for training.")
    fps: float = Field(2.0, gt=0, description="Rate (frames per second) at which those frames are sampled.")
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="Tokenizer TrainConfig fields (steps, batch_size, lr...); its 'model' maps VQVAEConfig fields.",
    )

    @field_validator("train")
    @classmethod
    def _valid_train(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = set(TrainConfig.model_fields)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"train_tokenizer.train: unknown field(s) {unknown}; known: {sorted(known)}")
        model = value.get("model", {})
        model_known = set(VQVAEConfig.model_fields)
        if not isinstance(model, dict) or set(model) - model_known:
            raise ValueError(f"train_tokenizer.train.model: must map VQVAEConfig fields {sorted(model_known)}")
        TrainConfig(**value)  # every range check, at construction
        return value

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.train)

    @property
    def codebook_size(self) -> int:
        return self.train_config().model.codebook_size


# FinetuneConfig fields the pipeline sets for a task (the data it ingested, where to write, what to load).
PIPELINE_FINETUNE_FIELDS = ("data", "test_data", "output", "load")
TASK_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SWEEP_KEYS = {"grid", "max_parallel", "timeout_s"}


class FinetuneTask(BaseModel):
    """One downstream task: its labelled video list, how to ingest it, and the fine-tuning settings.
    Runs a sweep already did for the same checkpoint and config are skipped by the sweep itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=TASK_NAME, description="Task name: its folder under out/tasks/ (letters, digits, _ . -).")
    videos: str = Field(
        description="The labelled video list, with a split column (train and test unless config says otherwise)."
    )
    root: str | None = Field(
        None, description="Folder the list's relative uris resolve against; None: the list's folder."
    )
    ingest: dict[str, Any] = Field(
        default_factory=dict,
        description="IngestConfig fields for this task's ingest (views default to finetune, whose 12 views include "
        "the 3 test crops); frame_size comes from config or the last pre-training stage.",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Flat FinetuneConfig fields (model fields mixed in), except data, test_data, output and load.",
    )
    sweep: dict[str, Any] | None = Field(
        None, description="Sweep the pre-trained checkpoint instead of one fine-tuning: a grid (field -> values, "
        "config as the base), optional max_parallel and timeout_s; None: one fine-tuning."
    )

    @field_validator("ingest")
    @classmethod
    def _valid_task_ingest(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_ingest_overrides(value, "finetune[].ingest")

    @field_validator("sweep")
    @classmethod
    def _valid_sweep(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            unknown = sorted(set(value) - SWEEP_KEYS)
            if unknown or not isinstance(value.get("grid"), dict):
                raise ValueError(f"finetune[].sweep: a mapping with a 'grid' of field -> values and optional "
                                 f"{sorted(SWEEP_KEYS - {'grid'})}; got keys {sorted(value)}")
        return value

    @field_validator("config")
    @classmethod
    def _valid_task_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(value) & set(PIPELINE_FINETUNE_FIELDS))
        if taken:
            raise ValueError(f"finetune[].config: {taken} are set by the pipeline (the task's ingest output, "
                             "OUT/tasks/<name>/..., and the last pre-training stage's final checkpoint)")
        return value


class PipelineConfig(BaseModel):
    """The whole pipeline. ``tokenizer`` None means: train our VQ-VAE into ``out/tokenizer`` first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    videos: str = Field(description="The pre-training video list (CSV, JSONL, Parquet or mmaction2 txt; any fsspec URL).")
    out: str = Field(description="Output folder of every stage (tokenizer/, tokens<S>/, pretrain/, tasks/).")
    root: str | None = Field(None, description="Folder the list's relative uris resolve against; None: the list's folder.")
    tokenizer: str | None = Field(
        None, description="Tokenizer spec dalle:PATH or vqvae:PATH; None: train our VQ-VAE into out/tokenizer first."
    )
    train_tokenizer: TokenizerTrainSettings = Field(
        default_factory=TokenizerTrainSettings, description="How the VQ-VAE trains when tokenizer is None."
    )
    ingest: dict[str, Any] = Field(
        default_factory=dict, description="IngestConfig fields for every ingest, except inputs, out, root, tokenizer, frame_size."
    )
    pretrain: dict[str, Any] = Field(
        description="A flat pre-training preset (model fields mixed in, optional stage2 mapping), without data and output."
    )
    finetune: list[FinetuneTask] = Field(default_factory=list, description="Downstream tasks fine-tuned after pre-training.")
    compare_scratch: bool = Field(
        False, description="Also fine-tune every task from random weights (out/tasks/<name>/scratch) for comparison."
    )
    timeout_s: float | None = Field(
        None, gt=0, description="Limit in seconds of each training launch (pre-training stage, fine-tuning, evaluation); None: no limit."
    )

    @field_validator("tokenizer")
    @classmethod
    def _valid_spec(cls, value: str | None) -> str | None:
        if value is not None:
            parse_tokenizer_spec(value)
        return value

    @field_validator("ingest")
    @classmethod
    def _valid_ingest(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_ingest_overrides(value, "ingest")

    @field_validator("finetune")
    @classmethod
    def _unique_tasks(cls, value: list[FinetuneTask]) -> list[FinetuneTask]:
        names = [t.name for t in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"finetune: task names must be unique, {twice} appear more than once")
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

    def sweep_mapping(self, task: FinetuneTask) -> dict[str, Any]:
        """The ``vimpac sweep`` mapping of a task with ``sweep``: its grid over the task's config, from
        the last stage's final checkpoint, results under ``out/tasks/<name>/sweep``."""
        if task.sweep is None:
            raise ConfigError(f"finetune task {task.name!r} has no sweep")
        base = {k: v for k, v in self.finetune_config(task).to_flat().items() if k in self._task_fields(task)}
        return {"name": f"{task.name}-sweep", "output": self.task_path(task, "sweep"),
                "checkpoint": str(Path(self.pretrain_stages()[-1].checkpoint_dir) / "final"),
                **{k: v for k, v in task.sweep.items() if k != "grid"}, "base": base, "grid": task.sweep["grid"],
                "tasks": {task.name: {}}}

    def _task_fields(self, task: FinetuneTask) -> set[str]:
        """The fields a task's fine-tuning sets itself (its config, data, splits, clip shape)."""
        return {*task.config, "data", "test_data", "split", "test_split", "clip_len", "frame_size"}

    def check(self) -> None:
        """Build every stage's config once, so a bad value fails before any work (ConfigError)."""
        self.pretrain_stages()
        spec = self.tokenizer or f"vqvae:{self.tokenizer_dir}/tokenizer"  # the trained one's path
        for size in self.frame_sizes():
            self.ingest_config(size, spec)
        for task in self.finetune:
            self.task_ingest_config(task, spec)
            self.finetune_config(task)
            if task.sweep is not None:
                from vimpac_core.sweep import SweepConfig

                SweepConfig(**self.sweep_mapping(task))
            if self.compare_scratch:
                self.finetune_config(task, scratch=True)

    # ---- derived settings (pure functions of the config) ----
    def out_path(self, *parts: str) -> str:
        return "/".join([self.out.rstrip("/"), *parts])

    @property
    def tokenizer_dir(self) -> str:
        return self.out_path("tokenizer")

    def _stage_flats(self) -> list[dict[str, Any]]:
        """Flat stage dicts (data not yet set) chained as every pre-training run chains them."""
        flat = {k: v for k, v in self.pretrain.items() if k != "stage2"}
        if self.tokenizer is None and "vocab_size" not in flat:
            flat["vocab_size"] = self.train_tokenizer.codebook_size  # our VQ-VAE's codes are the vocabulary
        return chain_stages(flat, self.pretrain.get("stage2"), self.out_path("pretrain"))

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
        return [PretrainConfig.from_flat({**flat, "data": self.ingest_out(_frame_size(flat))})
                for flat in self._stage_flats()]

    # ---- fine-tune tasks ----
    def task_path(self, task: FinetuneTask, *parts: str) -> str:
        return self.out_path("tasks", task.name, *parts)

    def task_frame_size(self, task: FinetuneTask) -> int:
        """The task's frame size: its config's, else the last pre-training stage's."""
        return int(task.config.get("frame_size", _frame_size(self._stage_flats()[-1])))

    def task_ingest_config(self, task: FinetuneTask, tokenizer: str) -> IngestConfig:
        """The ingest of the task's labelled list (views ``finetune`` unless the task says otherwise)."""
        size = self.task_frame_size(task)
        settings = {**{k: v for k, v in self.ingest.items() if k != "views"}, "views": "finetune", **task.ingest}
        try:
            return IngestConfig(**settings, inputs=task.videos, out=self.task_path(task, f"tokens{size}"),
                                root=task.root, tokenizer=tokenizer, frame_size=size)
        except ValidationError as err:
            raise ConfigError(f"finetune task {task.name!r} ingest: {err}") from None

    def finetune_config(self, task: FinetuneTask, *, scratch: bool = False) -> FinetuneConfig:
        """The task's FinetuneConfig: from the last stage's final checkpoint, or (``scratch``) the same
        run from random weights with the pre-trained model's architecture and vocabulary."""
        last = self.pretrain_stages()[-1]
        flat = {"split": "train", "test_split": "test", **task.config}
        data = self.task_path(task, f"tokens{self.task_frame_size(task)}")
        flat.update(data=data, test_data=data)
        if scratch:
            arch = last.model.model_dump(exclude={"num_labels", "clip_len", "frame_size", "dropout", "last_dropout"})
            flat = {**arch, **flat, "output": self.task_path(task, "scratch")}
            flat.setdefault("clip_len", last.model.clip_len)
        else:
            flat.update(output=self.task_path(task, "finetune"), load=str(Path(last.checkpoint_dir) / "final"))
            if "clip_len" not in flat:
                flat["clip_len"] = last.model.clip_len
        flat.setdefault("frame_size", self.task_frame_size(task))
        try:
            return FinetuneConfig.from_flat(flat)
        except ConfigError as err:
            raise ConfigError(f"finetune task {task.name!r}: {err}") from None


def _check_ingest_overrides(value: dict[str, Any], where: str) -> dict[str, Any]:
    taken = sorted(set(value) & set(PIPELINE_INGEST_FIELDS))
    if taken:
        raise ValueError(f"{where}: {taken} are set by the pipeline (use videos/out/root/tokenizer/pretrain)")
    unknown = sorted(set(value) - set(IngestConfig.model_fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}")
    return value


def _frame_size(flat: dict[str, Any]) -> int:
    return int(flat.get("frame_size", VimpacConfig.model_fields["frame_size"].default))


def load_pipeline_config(path: str | Path, *, task_videos: str | None = None, **overrides: Any) -> PipelineConfig:
    """A PipelineConfig from YAML; ``overrides`` (e.g. videos=..., out=...) replace top-level keys and
    ``task_videos`` replaces the video list of every fine-tune task.

    Raises ConfigError naming the file and the field when the file or a value is invalid.
    """
    data = load_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if task_videos is not None and isinstance(data.get("finetune"), list):
        data["finetune"] = [{**t, "videos": task_videos} if isinstance(t, dict) else t for t in data["finetune"]]
    try:
        config = PipelineConfig(**data)
        config.check()
    except ValidationError as err:
        raise ConfigError(f"pipeline config {str(path)!r}: {err}") from None
    except ConfigError as err:
        raise ConfigError(f"pipeline config {str(path)!r}: {err}") from None
    return config
