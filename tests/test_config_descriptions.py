"""Every field of every pydantic model in the library carries a description: the command line's
flags and ``--help`` are generated from these models, so a field without one is a flag without help."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from pydantic import BaseModel, Field

import vimpac_core


def library_models() -> list[type[BaseModel]]:
    """Every BaseModel subclass defined in a vimpac_core module (all modules imported first)."""
    for info in pkgutil.walk_packages(vimpac_core.__path__, prefix="vimpac_core."):
        importlib.import_module(info.name)
    found, todo = {}, [BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("vimpac_core.") and "[" not in sub.__name__:  # not generic aliases
                found[f"{sub.__module__}.{sub.__qualname__}"] = sub
    return [found[name] for name in sorted(found)]


def missing_descriptions(model: type[BaseModel]) -> list[str]:
    return [name for name, field in model.model_fields.items() if not (field.description or "").strip()]


MODELS = library_models()


def test_the_walk_finds_the_library_configs():
    names = {f"{m.__module__}.{m.__qualname__}" for m in MODELS}
    for expected in ("vimpac_core.model.config.VimpacConfig", "vimpac_core.train.config.PretrainConfig",
                     "vimpac_core.train.finetune_config.FinetuneConfig", "vimpac_core.config.IngestConfig",
                     "vimpac_core.sweep.grid.SweepConfig", "vimpac_core.pipeline_config.PipelineConfig"):
        assert expected in names


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.__module__}.{m.__qualname__}")
def test_every_field_has_a_description(model):
    missing = missing_descriptions(model)
    assert not missing, f"{model.__qualname__}: fields without a description: {', '.join(missing)}"


def test_a_field_without_description_is_reported():
    class Bare(BaseModel):
        documented: int = Field(0, description="has one")
        blank: int = Field(0, description=" ")
        plain: int = 1

    assert missing_descriptions(Bare) == ["blank", "plain"]
