"""Pre-training flow: stage 1 (e.g. frame 128) then stage 2 (frame 256, continuing stage 1).

Each stage is a `pretrain-stage` task that launches torchrun; stage 2 starts only when stage 1
succeeded, and loads its final checkpoint (see PretrainConfig / parse_stages). The flow only
orchestrates; the work is in vimpac_core.train.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from vimpac_core.train.config import PretrainConfig
from vimpac_tasks.train import pretrain_stage, report_pretrain


@flow(name="pretrain")
def pretrain(stages: list[dict], timeout_s: float | None = None) -> list[dict]:
    """Run the stages (flat PretrainConfig dicts) in order; returns every stage's final metrics."""
    logger = get_run_logger()
    results = []
    for number, config in enumerate(stages, start=1):
        logger.info("pre-training stage %d of %d", number, len(stages))
        results.append(pretrain_stage.with_options(name=f"pretrain-stage-{number}")(config, number, timeout_s))
    report_pretrain(results)
    return results


def run_pretrain(stages: list[PretrainConfig], timeout_s: float | None = None) -> list[dict]:
    """What `vimpac pretrain` calls: validated configs in, metrics of every stage out."""
    return pretrain(stages=[s.to_flat() for s in stages], timeout_s=timeout_s)
