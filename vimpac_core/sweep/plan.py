"""A sweep's plan: its runs with keys and outputs, the checkpoint they load, and what is already done.

Order of checks: the sweep file and every run config first (a bad config fails before any
work), then the checkpoint (resolved, hashed, pinned when it came from ``latest:``), then the
results table (which runs are done). Each run writes to
``<sweep output>/runs/<run id>/<checkpoint digest[:12]>``: the same config fine-tuned from a newer
checkpoint is new work in a new folder.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from vimpac_core.errors import ConfigError
from vimpac_core.storage import join
from vimpac_core.sweep.checkpoints import (
    LATEST_PREFIX,
    ResolvedCheckpoint,
    checkpoint_digest,
    pin_checkpoint,
    resolve_checkpoint,
)
from vimpac_core.sweep.grid import RunSpec, SweepConfig, expand_runs, swept_fields
from vimpac_core.sweep.results import completed_runs, read_results, result_row, run_key
from vimpac_core.train.finetune_config import FinetuneConfig

PLACEHOLDER_OUTPUT = "sweep-run-output"  # FinetuneConfig needs one; the sweep sets the real one per run


@dataclass(frozen=True)
class PlannedRun:
    """One run of this sweep; ``done`` is the earlier ``ok`` row when it need not run again."""

    run: RunSpec
    key: str
    output: str
    done: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SweepPlan:
    sweep: SweepConfig
    sweep_id: str
    started_at: datetime
    checkpoint: ResolvedCheckpoint
    digest: str
    load: str
    swept: list[str]
    runs: list[PlannedRun]

    def finetune_config(self, planned: PlannedRun) -> dict[str, Any]:
        """The flat fine-tune config of a run: its config plus the sweep's output and checkpoint."""
        return {**planned.run.config, "output": planned.output, "load": self.load}

    def row(self, planned: PlannedRun, status: str, **outcome: Any) -> dict[str, Any]:
        """The results row of ``planned`` (outcome: metrics, wall_time_s, error, output)."""
        outcome.setdefault("output", planned.output)
        return result_row(sweep_id=self.sweep_id, started_at=self.started_at, run=planned.run, key=planned.key,
                          checkpoint=str(self.checkpoint.path), checkpoint_digest=self.digest,
                          checkpoint_source=self.checkpoint.source, status=status, swept=self.swept, **outcome)

    def skipped_rows(self) -> list[dict[str, Any]]:
        """Rows for the runs already done: the earlier row's metrics and output, status skipped."""
        return [self.row(p, "skipped", metrics=p.done, output=p.done["output"]) for p in self.runs if p.done]

    def todo(self) -> list[PlannedRun]:
        return [p for p in self.runs if p.done is None]


def canonical_finetune(flat: dict[str, Any]) -> dict[str, Any]:
    """A run's flat config validated as a FinetuneConfig, every default filled in (without output/load).

    Only the config itself is checked here; whether the data exists and fits the checkpoint is
    checked by each run (a missing data folder fails that run, not the sweep)."""
    values = FinetuneConfig.from_flat({**flat, "output": PLACEHOLDER_OUTPUT}).to_flat()
    return {k: v for k, v in values.items() if k not in ("output", "load")}


def new_sweep_id(now: datetime) -> str:
    """``<UTC time>-<6 hex>``: sorts by start time, unique across machines."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def validate_sweep(
    sweep: SweepConfig,
    checkpoint: str | None = None,
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = canonical_finetune,
) -> tuple[list[RunSpec], ResolvedCheckpoint]:
    """Every run config checked and the checkpoint found (nothing hashed or written): the
    errors a sweep can meet before any work, each one line naming the field or path."""
    spec = checkpoint or sweep.checkpoint
    if not spec:
        raise ConfigError(f"checkpoint: sweep {sweep.name!r} names none; set `checkpoint:` in the sweep file or "
                          f"pass --checkpoint (a checkpoint folder or {LATEST_PREFIX}<pre-training output>)")
    return expand_runs(sweep, normalize), resolve_checkpoint(spec)


def plan_sweep(
    sweep: SweepConfig,
    checkpoint: str | None = None,
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = canonical_finetune,
    pin: bool = True,
) -> SweepPlan:
    """Everything a sweep needs before it fine-tunes (``checkpoint`` overrides the sweep file's).

    ``pin`` False (a dry run) loads the resolved folder itself and writes nothing under the output."""
    runs, resolved = validate_sweep(sweep, checkpoint, normalize)
    spec = resolved.source
    digest = checkpoint_digest(resolved.path)
    load = resolved.path
    if pin and spec.startswith(LATEST_PREFIX):  # a running pre-training prunes old steps: keep this one
        load = pin_checkpoint(resolved.path, digest, join(sweep.output, "checkpoints"))
    done = completed_runs(read_results(sweep.output))
    planned = []
    for run in runs:
        key = run_key(digest, run)
        planned.append(PlannedRun(run, key, join(sweep.output, "runs", run.run_id, digest[:12]), done.get(key)))
    now = datetime.now(timezone.utc)
    return SweepPlan(sweep, new_sweep_id(now), now, resolved, digest, str(load), swept_fields(sweep), planned)
