"""Fill in a fine-tuning / evaluation config from its checkpoint and data, before any work.

The backbone's architecture and vocabulary come from the ``load`` checkpoint (our pre-training
checkpoint, an imported released snapshot, or a fine-tuned model): a field the user set to
another value is an error naming both. The clip shape (clip_len, frame_size) is the run's own;
when it differs from the checkpoint's the positional tables are interpolated with
``different_shape``, otherwise the error names both shapes (the release silently replaced the
user's flags). ``num_labels`` unset: 1 + the largest label of the training data.
"""

from __future__ import annotations

import json
from pathlib import Path

from vimpac_core.errors import CheckpointError, ConfigError
from vimpac_core.model import VimpacConfig
from vimpac_core.model_folder import CONFIG_NAME
from vimpac_core.storage import complete_dir
from vimpac_core.train.finetune_config import EvaluateConfig, FinetuneConfig
from vimpac_core.train.preflight import DataFacts, check_fits, data_facts

SHAPE_FIELDS = ("clip_len", "frame_size")
# The run decides these; everything else of VimpacConfig is the checkpoint's.
RUN_FIELDS = (*SHAPE_FIELDS, "dropout", "last_dropout", "num_labels", "gradient_checkpointing")


def read_model_config(folder: str | Path, field: str = "load") -> tuple[VimpacConfig, str]:
    """(VimpacConfig, architecture) of a saved model folder, without reading its weights."""
    path = complete_dir(folder) or Path(folder)
    file = path / CONFIG_NAME
    if not file.is_file():
        raise CheckpointError(
            f"{field}: {str(folder)!r} is not a saved model folder (no {CONFIG_NAME}); give a checkpoint folder "
            "such as <output>/checkpoints/final or the output of `vimpac import-checkpoint`"
        )
    raw = json.loads(file.read_text())
    architecture = raw.pop("architecture", "")
    return VimpacConfig(**raw), architecture


def shape_text(config: VimpacConfig) -> str:
    t, h, w = config.grid_shape
    return f"clip_len {config.clip_len}, frame_size {config.frame_size} ({t}x{h}x{w} tokens)"


def merge_model(run: VimpacConfig, saved: VimpacConfig, *, different_shape: bool, field: str = "load") -> VimpacConfig:
    """The model of a run starting from ``saved``: saved architecture + the run's own fields."""
    given = run.model_fields_set
    for name in VimpacConfig.model_fields:
        if name in RUN_FIELDS or name not in given:
            continue
        if getattr(run, name) != getattr(saved, name):
            raise ConfigError(
                f"{name}: the run asks {getattr(run, name)!r} but the {field} checkpoint was saved with "
                f"{getattr(saved, name)!r}; the architecture and vocabulary come from the checkpoint (drop the flag)"
            )
    values = saved.model_dump()
    values.update({n: getattr(run, n) for n in RUN_FIELDS if n in given})
    if values.get("num_labels") is None and "num_labels" not in given:
        values["num_labels"] = saved.num_labels
    merged = VimpacConfig(**values)
    if merged.grid_shape != saved.grid_shape and not different_shape:
        raise CheckpointError(
            f"clip_len/frame_size: the {field} checkpoint has {shape_text(saved)} but this run asks "
            f"{shape_text(merged)}; pass --different-shape to interpolate the positional tables, or use the "
            "checkpoint's shape"
        )
    return merged


def resolve_finetune(config: FinetuneConfig) -> FinetuneConfig:
    """Checkpoint architecture and vocabulary, num_labels from the data; data checked against the model."""
    model = config.model
    if config.load:
        saved, _ = read_model_config(config.load)
        model = merge_model(model, saved, different_shape=config.different_shape)
    facts = data_facts(config.data, "data", config.split, config.storage_options)
    labels = facts.index.num_labels()
    if labels == 0:
        raise ConfigError(f"data: no video of {config.data!r} has a label; fine-tuning needs labelled shards")
    if model.num_labels is None:
        model = model.model_copy(update={"num_labels": labels})
    elif model.num_labels < labels:
        raise ConfigError(f"num_labels: {model.num_labels} classes, but {config.data!r} has label {labels - 1}")
    model = VimpacConfig(**model.model_dump())  # validated again after the merge
    check_fits(facts, "data", grid_size=model.grid_size, vocab_size=model.vocab_size)
    for field, url, split in (("test_data", config.test_url, config.test_split),
                              ("val_data", config.val_data, config.val_split)):
        if url and (url, split) != (config.data, config.split):
            other = data_facts(url, field, split, config.storage_options)
            check_fits(other, field, grid_size=model.grid_size, vocab_size=model.vocab_size)
            check_labels(other, field, model.num_labels)
    return config.model_copy(update={"model": model})


def check_labels(facts: DataFacts, field: str, num_labels: int) -> None:
    """Every label of ``field`` is one of the model's ``num_labels`` classes."""
    top = facts.index.num_labels()
    if top > num_labels:
        raise ConfigError(
            f"{field}: {facts.index.url!r} has label {top - 1}, but the model has {num_labels} classes; "
            "use data labelled with the same class list (classes.json) as the training data"
        )


def resolve_evaluate(config: EvaluateConfig) -> VimpacConfig:
    """The evaluated model's config; its data must fit it."""
    saved, architecture = read_model_config(config.checkpoint, "checkpoint")
    if architecture != "VimpacForClassification" or saved.num_labels is None:
        raise CheckpointError(
            f"checkpoint: {config.checkpoint!r} holds a {architecture or 'model'} without a classifier; "
            "evaluate a fine-tuned checkpoint (vimpac finetune output/checkpoints/final)"
        )
    facts = data_facts(config.data, "data", config.split, config.storage_options)
    check_fits(facts, "data", grid_size=saved.grid_size, vocab_size=saved.vocab_size)
    check_labels(facts, "data", saved.num_labels)
    return saved
