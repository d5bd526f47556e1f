"""Sweep YAML -> run configs: tasks x the grid's lists, in a stable order, each with a stable id.

A sweep file::

    name: nightly
    output: runs/sweeps/nightly        # results.parquet, summary.md, runs/<run id>/<checkpoint>/
    checkpoint: latest:runs/pretrain   # a checkpoint folder, or latest:<pre-training output>
    max_parallel: 1                    # fine-tune runs at once
    timeout_s: 86400                   # limit of each torchrun launch (train, evaluate) of a run
    base: {epochs: 10}                 # fine-tune fields every run shares
    grid:                              # a list sweeps its field (a list-valued field: a list of lists)
      lr: [1.0e-4, 5.0e-5]
      seed: [0, 1]
    tasks:                             # name -> a fine-tune preset + its data (+ any field, + its own grid)
      ucf101: {preset: configs/finetune/ucf101.yaml, data: tokens/ucf101}

A run's flat fine-tune config is, later keys winning: the task's preset file, ``base``, the
task's own fields, then its grid point (the task's ``grid`` replaces the shared grid's entries of
the same name). ``output`` and ``load`` belong to the sweep: it sets them per run. Paths (presets,
data, output) are relative to the current folder. Order: tasks as listed, then the grid's
cartesian product with the first field outermost and each list's values as listed. The run id is
``<task>-<10 hex of the config's digest>``: the same config always gets the same id.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vimpac_core.errors import ConfigError
from vimpac_core.train.config import load_yaml

SWEEP_OWNED = ("output", "load")  # set by the sweep for every run
TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TaskSpec(BaseModel):
    """One downstream task: a fine-tune preset file, its own grid entries, and fine-tune fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    preset: str | None = Field(None, description="Fine-tune preset YAML the task's runs start from; None: no preset.")
    grid: dict[str, Any] = Field(
        default_factory=dict, description="The task's own grid entries: field -> values, replacing the shared grid's."
    )

    def fields(self) -> dict[str, Any]:
        """The fine-tune fields given directly on the task (e.g. ``data``)."""
        return dict(self.model_extra or {})


class SweepConfig(BaseModel):
    """A sweep: where its results go, the checkpoint, and the runs (tasks x grid)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("sweep", description="Name of the sweep in its summary and Prefect artifacts.")
    output: str = Field(description="Folder of results.parquet, summary.md and runs/<run id>/.")
    checkpoint: str | None = Field(
        None, description="Checkpoint folder to fine-tune from, or latest:<pre-training output>; None: give --checkpoint."
    )
    max_parallel: int = Field(1, ge=1, description="Fine-tune runs at once.")
    timeout_s: float | None = Field(
        None, gt=0, description="Limit in seconds of each torchrun launch (train, evaluate) of a run; None: no limit."
    )
    base: dict[str, Any] = Field(default_factory=dict, description="Fine-tune fields every run shares.")
    grid: dict[str, Any] = Field(
        default_factory=dict, description="Field -> list of values, swept as a cartesian product (first field outermost)."
    )
    tasks: dict[str, TaskSpec] = Field(
        min_length=1, description="Task name -> a fine-tune preset, its data and any fine-tune field (and its own grid)."
    )

    @field_validator("tasks")
    @classmethod
    def _task_names(cls, tasks: dict[str, TaskSpec]) -> dict[str, TaskSpec]:
        for name in tasks:
            if not TASK_NAME.match(name):
                raise ValueError(f"task name {name!r}: use letters, digits, '_', '.', '-' (it names folders)")
        return tasks


@dataclass(frozen=True)
class RunSpec:
    """One fine-tune run of a sweep. ``config``: the flat fine-tune fields as written (without
    output/load), what the run is given; ``canonical``: the same validated with every default filled
    in, what its id and key are taken from."""

    run_id: str
    task: str
    swept: dict[str, Any]
    config: dict[str, Any] = field(repr=False)
    canonical: dict[str, Any] = field(repr=False)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text (and digests)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(value: Any) -> str:
    """sha256 hex of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def load_sweep(source: str | Path | dict[str, Any]) -> SweepConfig:
    """A SweepConfig from a YAML file or a mapping; ConfigError names the file and the field."""
    where = "sweep" if isinstance(source, dict) else f"sweep file {str(source)!r}"
    data = dict(source) if isinstance(source, dict) else load_yaml(source)
    try:
        return SweepConfig(**data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {str(e['msg']).removeprefix('Value error, ')}" for e in err.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None


def _owned_check(values: dict[str, Any], where: str) -> None:
    taken = [k for k in SWEEP_OWNED if k in values]
    if taken:
        raise ConfigError(f"{where}.{taken[0]}: set by the sweep for every run (runs write under the sweep's "
                          "output and load its checkpoint); remove it")


def _grid_lists(grid: dict[str, Any], where: str) -> dict[str, list[Any]]:
    """Grid entries as lists of choices: a scalar is one choice; an empty or repeating list fails."""
    out = {}
    for name, values in grid.items():
        choices = values if isinstance(values, list) else [values]
        if not choices:
            raise ConfigError(f"{where}.{name}: an empty list gives no runs; list at least one value")
        texts = [canonical_json(v) for v in choices]
        if len(set(texts)) != len(texts):
            raise ConfigError(f"{where}.{name}: {values!r} lists a value twice; list each value once")
        out[name] = choices
    return out


def task_grid(sweep: SweepConfig, task: str) -> dict[str, list[Any]]:
    """The grid of one task: the shared grid with the task's own entries replacing or added."""
    spec = sweep.tasks[task]
    return {**_grid_lists(sweep.grid, "grid"), **_grid_lists(spec.grid, f"tasks.{task}.grid")}


def swept_fields(sweep: SweepConfig) -> list[str]:
    """Every field some task sweeps, in first-seen order (the results table's extra columns)."""
    names: list[str] = []
    for task in sweep.tasks:
        names += [n for n in task_grid(sweep, task) if n not in names]
    return names


def _task_base(sweep: SweepConfig, task: str) -> dict[str, Any]:
    spec = sweep.tasks[task]
    _owned_check(sweep.base, "base")
    _owned_check(spec.fields(), f"tasks.{task}")
    flat: dict[str, Any] = {}
    if spec.preset is not None:
        preset = load_yaml(spec.preset)
        flat.update({k: v for k, v in preset.items() if k not in SWEEP_OWNED})  # presets carry placeholders
    flat.update(sweep.base)
    flat.update(spec.fields())
    return flat


def expand_runs(
    sweep: SweepConfig, normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> list[RunSpec]:
    """Every run of the sweep in the stable order (module docstring).

    ``normalize`` turns a flat config into its canonical form (the fine-tune config validated, its
    defaults filled in) for the ids, so a value written two ways keys the same run; it raises
    ConfigError for a bad config, which is re-raised naming the task and grid point.
    """
    runs: list[RunSpec] = []
    for task in sweep.tasks:
        base = _task_base(sweep, task)
        grid = task_grid(sweep, task)
        _owned_check(grid, f"tasks.{task}.grid" if set(grid) & set(sweep.tasks[task].grid) else "grid")
        for point in itertools.product(*grid.values()):
            swept = dict(zip(grid, point, strict=True))
            config = {**base, **swept}
            canonical = config
            if normalize is not None:
                try:
                    canonical = normalize(config)
                except ConfigError as err:
                    raise ConfigError(f"task {task} at {canonical_json(swept)}: {err}") from None
            run = RunSpec(f"{task}-{digest(canonical)[:10]}", task, swept, config, canonical)
            twin = next((r for r in runs if r.run_id == run.run_id), None)
            if twin is not None:
                raise ConfigError(f"task {task}: grid points {canonical_json(twin.swept)} and "
                                  f"{canonical_json(swept)} give the same config; list each value once")
            runs.append(run)
    return runs
