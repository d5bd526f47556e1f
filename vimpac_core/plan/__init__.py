"""Capacity plan of a run: `estimate` (pure arithmetic over rates) and `calibrate` (rates measured here)."""

from vimpac_core.plan.estimate import (
    Cluster,
    Plan,
    Rates,
    StageEstimate,
    TrainStage,
    Workload,
    checkpoint_bytes,
    estimate,
    format_plan,
    plan_dict,
    token_shard_bytes,
)

__all__ = [
    "Cluster",
    "Plan",
    "Rates",
    "StageEstimate",
    "TrainStage",
    "Workload",
    "checkpoint_bytes",
    "estimate",
    "format_plan",
    "plan_dict",
    "token_shard_bytes",
]
