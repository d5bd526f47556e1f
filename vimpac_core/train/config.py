"""Training configs: TrainConfigBase (what every run shares) and PretrainConfig (one pre-training
stage), with the original VIMPAC flag names; FinetuneConfig (finetune_config.py) extends the base.

Presets (configs/pretrain/*.yaml) and the CLI are flat, like the original scripts
(``--hid-dim 768 --lr 3e-4``): `PretrainConfig.from_flat` routes model fields (VimpacConfig's)
into ``model`` and the rest to the trainer. Every check runs at construction, before any work,
and a failure names the field (pydantic ValidationError, or ConfigError for cross-field checks).

``data`` may be any fsspec URL; ``output`` and ``load`` (checkpoints) are local folders for now:
a remote URL there fails at construction rather than after the first epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from fsspec.core import split_protocol
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vimpac_core.config_base import describe_validation_error
from vimpac_core.errors import ConfigError
from vimpac_core.model import VimpacConfig


def local_folder(value: str | None, field: str) -> str | None:
    """A local path from ``value`` (``file://`` stripped); ValueError naming ``field`` for a remote URL."""
    if value is None:
        return value
    protocol, path = split_protocol(value)
    if protocol in (None, "file", "local"):
        return path
    raise ValueError(
        f"{field}: {value!r} is a {protocol}:// URL, but checkpoints are written and read "
        "with local file APIs; give a local folder (or a mounted path) and copy it to object storage after"
    )


class TrainConfigBase(BaseModel):
    """What every training run shares (data, optimisation, processes, checkpoints); the objectives'
    configs (PretrainConfig, FinetuneConfig) add their own fields. Batch sizes count videos."""

    model_config = ConfigDict(extra="forbid")
    KIND: ClassVar[str] = "training"  # names the config in error messages
    ENTRY: ClassVar[str] = ""  # the module torchrun runs for it (-m ENTRY --config run.json)

    model: VimpacConfig = Field(
        default_factory=VimpacConfig, description="The model's hyper-parameters (flat model keys of a preset land here)."
    )
    # Data: an ingest output folder (any fsspec URL) and how to cut clips from it.
    data: str = Field(description="Token shards to train on: an ingest output folder (any fsspec URL).")
    split: str | None = Field(
        None, description="Keep only videos of this split of the ingest list (rows without a split always stay); None: all."
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for reading data (e.g. S3 endpoint_url, key, secret)."
    )
    frame_rate: int = Field(
        2, ge=1, description="Stride between a clip's frames, in token frames (original --frame-rate is in fps: "
        "tokens ingested at 16 fps need 8 for 2 fps clips)."
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes per rank (0: load in the training process).")
    cache_row_groups: int = Field(4, ge=1, description="Decoded Parquet row groups each data worker keeps in memory (LRU).")
    # Optimisation (paper Table 4 defaults for the small analysis model).
    lr: float = Field(1e-3, gt=0, description="Peak learning rate of AdamW.")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.98, ge=0, lt=1, description="AdamW beta2.")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon (original --epsilon).")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay (none on biases and LayerNorm weights).")
    warm_up: float = Field(
        0.1, ge=0, description="Linear warm-up: below 1 a fraction of the schedule's steps, otherwise a whole number of steps."
    )
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="Learning-rate decay after warm-up: linear or cosine to 0, or constant."
    )
    epochs: int = Field(10, ge=1, description="Passes over the training videos in this run (stage).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps; None: run all epochs.")
    bs_per_gpu: int = Field(32, ge=1, description="Videos per micro-batch on each rank.")
    batch_size: int | None = Field(
        None, ge=1, description="Videos per optimizer step over all ranks (gradient accumulation follows); "
        "None: gradient_accumulation decides."
    )
    gradient_accumulation: int | None = Field(
        None, ge=1, description="Micro-batches per optimizer step; None: from batch_size, else 1."
    )
    grad_clip: float = Field(1.0, ge=0, description="Clip the gradient norm to this value (original --clip-grad-norm).")
    amp: Literal["none", "bf16", "fp16"] = Field(
        "none", description="Mixed precision: none (fp32), bf16, or fp16 with a loss scaler (GPU only; original --fp16)."
    )
    seed: int = Field(9595, description="Random seed of weights, data order, clips and masks (dropout adds the rank).")
    # Processes and devices: torchrun starts nproc_per_node ranks.
    nproc_per_node: int = Field(1, ge=1, description="Training processes (ranks) torchrun starts on each node.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Device of each rank: cpu, cuda, or auto (cuda when present).")
    # Several nodes: one launcher per node (this config with its node_rank), meeting at torchrun's c10d
    # rendezvous on rdzv_endpoint; output is shared by all nodes.
    nnodes: int = Field(1, ge=1, description="Nodes of the run, each running one launcher with its own node_rank.")
    node_rank: int = Field(0, ge=0, description="This node's rank among nnodes, from 0.")
    rdzv_endpoint: str | None = Field(
        None, description="HOST:PORT of torchrun's c10d rendezvous, reachable from every node; needed when nnodes > 1."
    )
    rdzv_id: str = Field("vimpac", description="Rendezvous id shared by the nodes of one run.")
    # Output, checkpoints, starting points.
    output: str = Field(description="Local folder for checkpoints/, metrics and tensorboard/ (shared by all nodes).")
    save_every: int = Field(
        0, ge=0, description="Also save a checkpoint every this many optimizer steps; 0: only at epoch ends."
    )
    keep_checkpoints: int = Field(2, ge=1, description="Newest step checkpoints kept in output/checkpoints (older ones pruned).")
    log_every: int = Field(10, ge=1, description="Log training metrics every this many optimizer steps.")
    resume: bool = Field(
        False, description="Continue from the latest checkpoint in output (weights, optimizer, counters, RNG) when there is one."
    )
    load: str | None = Field(
        None, description="Local checkpoint folder whose weights start the run (ignored when resume finds a checkpoint)."
    )
    different_shape: bool = Field(
        False, description="Allow load from another clip_len / frame_size: positional tables are interpolated."
    )

    @field_validator("output", "load")
    @classmethod
    def _local_folder(cls, value: str | None, info: Any) -> str | None:
        return local_folder(value, info.field_name)

    @field_validator("warm_up")
    @classmethod
    def _warm_up_steps(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError(
                f"warm_up: {value} is neither a fraction (< 1) of the schedule nor a whole number of steps (>= 1)"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> TrainConfigBase:
        if self.batch_size is not None:
            self.accumulation_steps()  # with gradient_accumulation given too, they must agree
        if self.amp == "fp16" and self.device == "cpu":
            raise ValueError("amp: 'fp16' (with its loss scaler) needs a GPU; use amp 'bf16' or 'none' with device 'cpu'")
        self._check_rendezvous()
        return self

    def _check_rendezvous(self) -> None:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be below nnodes {self.nnodes} (node ranks count from 0)")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"rdzv_endpoint: nnodes {self.nnodes} needs a rendezvous endpoint HOST:PORT that "
                             "every node reaches (e.g. the first node's address and a free port)")
        if self.rdzv_endpoint is not None:
            host, sep, port = self.rdzv_endpoint.rpartition(":")
            if not (sep and host and port):
                raise ValueError(f"rdzv_endpoint {self.rdzv_endpoint!r} must be HOST:PORT, e.g. 10.0.0.1:29400")

    def accumulation_steps(self) -> int:
        """Micro-batches per optimizer step so one step sees ``batch_size`` videos over all ranks."""
        per_step = self.bs_per_gpu * self.nproc_per_node * self.nnodes  # every rank of every node
        names, sizes = "bs_per_gpu x nproc_per_node", f"{self.bs_per_gpu} x {self.nproc_per_node}"
        if self.nnodes > 1:
            names, sizes = names + " x nnodes", sizes + f" x {self.nnodes}"
        if self.batch_size is None:
            return self.gradient_accumulation or 1
        if self.batch_size % per_step:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of {names} = {sizes}; change batch_size or bs_per_gpu"
            )
        steps = self.batch_size // per_step
        if self.gradient_accumulation is not None and self.gradient_accumulation != steps:
            raise ValueError(
                f"gradient_accumulation {self.gradient_accumulation} disagrees with batch_size "
                f"{self.batch_size} / ({sizes}) = {steps}; give one of them"
            )
        return steps

    @property
    def checkpoint_dir(self) -> str:
        return str(Path(self.output) / "checkpoints")

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> Self:
        """Build from flat keys (model fields mixed in); errors name the field (ConfigError)."""
        values = dict(values)
        model_keys = set(VimpacConfig.model_fields)
        model = {k: values.pop(k) for k in list(values) if k in model_keys}
        if isinstance(values.get("model"), dict):
            model = {**values.pop("model"), **model}
        try:
            return cls(model=model, **values)
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, cls.KIND)) from None

    def to_flat(self) -> dict[str, Any]:
        """The inverse of from_flat (JSON-able): what a preset file or the launcher passes on."""
        out = self.model_dump(mode="json", exclude={"model"})
        out.update(self.model.model_dump(mode="json"))
        return out


class PretrainConfig(TrainConfigBase):
    """One pre-training stage. Each video gives two clips (the contrastive pair)."""

    KIND: ClassVar[str] = "pre-training"
    ENTRY: ClassVar[str] = "vimpac_core.train.pretrain"

    views: list[str] | None = Field(
        None, description="Views (ingest view names) a video's clips are drawn from; None: every view it has."
    )
    nce_relevance_range: int | None = Field(
        None, ge=0, description="Most token frames between the starts of a video's two clips; None: unbounded."
    )
    mask_blocks: int = Field(
        5, description="Masked blocks per clip; negative -p: i.i.d. token masking with probability p/1000."
    )
    mask_rand_replace: bool = Field(
        False, description="Per block: 80% MASK, 10% random code, 10% unchanged (all predicted) instead of all MASK."
    )
    schedule_epochs: int | None = Field(
        None, ge=1, description="Epochs the lr schedule spans (e.g. both stages' total); None: epochs."
    )
    load_optimizer: bool = Field(
        True, description="With load: carry the checkpoint's optimizer, schedule and counters on (a next stage)."
    )
    # kNN monitor: top-1 of a k-NN classifier on CLS features of a labelled shard set.
    knn_data: str | None = Field(
        None, description="Labelled token shards (fsspec URL) for a k-NN top-1 monitor on CLS features; None: no monitor."
    )
    knn_every: int = Field(1, ge=1, description="Run the k-NN monitor every this many epochs.")
    knn_k: int = Field(20, ge=1, description="Neighbours of the k-NN monitor's classifier.")
    knn_views: list[str] | None = Field(
        None, description="Views of knn_data the monitor reads (the first is used); None: the shards' first view."
    )

    @model_validator(mode="after")
    def _check_pretrain(self) -> PretrainConfig:
        if self.schedule_epochs is not None and self.schedule_epochs < self.epochs and self.load is None:
            raise ValueError(f"schedule_epochs ({self.schedule_epochs}) must be >= epochs ({self.epochs})")
        if self.mask_blocks == 0:
            raise ValueError("mask_blocks: 0 masks nothing; use > 0 blocks or < 0 for i.i.d. masking (-p*1000)")
        return self


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A preset file as a flat dict; ConfigError names the file when it is not a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of flag: value")
    return data


def chain_stages(stage1: dict[str, Any], stage2: dict[str, Any] | None, output: str | None) -> list[dict[str, Any]]:
    """The flat configs of a pre-training run's stages: the one rule by which stage 2 continues stage 1.

    ``stage2`` holds stage 2's changes over ``stage1`` (None: one stage, written to ``output`` when
    given). With two stages, stage i writes to ``<output>/stage<i>``, and stage 2 loads stage 1's final
    checkpoint, resizing its positional tables (``different_shape``) unless a stage says otherwise."""
    if stage2 is None:
        return [dict(stage1) if output is None else {**stage1, "output": output}]
    root = str(output if output is not None else stage1.get("output", ".")).rstrip("/") or "/"  # keeps a URL's "//"
    first = {**stage1, "output": f"{root}/stage1"}
    second = {"different_shape": True, **stage1, **stage2, "output": f"{root}/stage2"}
    second["load"] = str(Path(first["output"]) / "checkpoints" / "final")
    return [first, second]


def parse_stages(path: str | Path, overrides: dict[str, Any] | None = None) -> list[PretrainConfig]:
    """The stages of a preset: the file is stage 1; its optional ``stage2`` key (a mapping, or the
    name of a YAML file next to it) holds stage 2's changes over stage 1. ``overrides`` (CLI flags)
    apply to every stage, except keys ``stage2.<field>``, which apply to stage 2 only (e.g. the
    frame-256 shards of ``stage2.data``). With two stages, stage i writes to ``<output>/stage<i>`` and
    stage 2 loads stage 1's final checkpoint (``output``/``load`` in the stage-2 file are ignored then).
    ``vocab_size: auto`` becomes the codebook size of the stage's data tokenizer (preflight.auto_vocab)."""
    from vimpac_core.train.preflight import auto_vocab  # reads shards only for vocab_size: auto

    flat = load_yaml(path)
    stage2 = flat.pop("stage2", None)
    overrides = dict(overrides or {})
    stage2_only = {k[len("stage2."):]: overrides.pop(k) for k in list(overrides) if k.startswith("stage2.")}
    flat.update(overrides)
    if stage2 is None and stage2_only:
        raise ConfigError(f"stage2.{next(iter(stage2_only))}: the preset {str(path)!r} has no stage 2")
    if isinstance(stage2, str):
        stage2 = load_yaml(Path(path).parent / stage2)
    if stage2 is not None and not isinstance(stage2, dict):
        raise ConfigError(f"stage2 in {str(path)!r} must be a mapping or a YAML file name")
    changes = None if stage2 is None else {**stage2, **overrides, **stage2_only}
    return [PretrainConfig.from_flat(auto_vocab(stage)) for stage in chain_stages(flat, changes, None)]
