"""Prefect tasks of the ingest stage: thin wrappers over ``vimpac_core.ingest``.

Retries only for transient errors (``retry_condition_fn``); the shard tasks carry the ``gpu``
tag (for concurrency limits on GPU pools) and persist their results under the output folder with
a cache key that survives new runs (:class:`CommittedShard`: the shard id, which hashes the
videos, settings and tokenizer weights digest, plus the task's source and the manifest's bytes),
so a brand-new flow run skips shards an earlier run finished. The tasks also check the manifest
first, so a committed shard is skipped even when the cache is cold (or was cleared).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE, TASK_SOURCE, CachePolicy
from prefect.filesystems import RemoteFileSystem
from prefect.runtime import flow_run
from prefect.utilities.hashing import hash_objects

from vimpac_core import interrupts
from vimpac_core.config import IngestConfig
from vimpac_core.errors import TokenizerError
from vimpac_core.ingest import (
    IngestPlan,
    ShardPlan,
    committed_stats,
    failed_video_ids,
    get_tokenizer,
    load_plan,
    prepare_output,
    process_shard,
)
from vimpac_core.shards.manifest import manifest_url
from vimpac_core.shards.schema import RESULTS_DIR
from vimpac_core.storage import exists, is_local, join, local_path, read_bytes
from vimpac_tasks.retry import only_transient


def result_storage_for(out: str) -> Path | RemoteFileSystem:
    """Persisted task results live under the output folder: removing it also clears the cache.

    Local folders are given as a Path; a remote folder (s3://...) becomes a RemoteFileSystem
    block saved on the Prefect server under a name derived from the URL (Prefect needs tasks'
    remote result storage persisted server-side so that any worker can read it back).
    """
    url = join(out, RESULTS_DIR)
    if is_local(url):
        return local_path(url).resolve()
    name = "vimpac-results-" + hashlib.sha256(url.encode()).hexdigest()[:16]
    block = RemoteFileSystem(basepath=url)
    block.save(name, overwrite=True)
    return block


@dataclass
class CommittedShard(CachePolicy):
    """Cache key of a shard task: the task's source, the output folder, the shard id (a hash of
    the shard's videos, the extraction settings and the tokenizer's weights digest), the videos a
    retry asks for, and the shard's manifest bytes as they are when the task starts.

    Runtime knobs (workers, batch size, device) are not part of it. While a shard has no manifest
    there is no key: the task always runs and nothing stored is reused, so a shard whose files
    were deleted is redone. A retry changes the manifest, so no later run reports stale figures.
    """

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        config, shard = inputs["config"], inputs["shard"]
        url = manifest_url(config.out, shard.shard_id)
        if not exists(url):
            return None
        manifest = hashlib.sha256(read_bytes(url)).hexdigest()
        source = TASK_SOURCE.compute_key(task_ctx, inputs, flow_parameters)
        return hash_objects(source, config.out, shard.shard_id, inputs.get("retry_ids"), manifest,
                            raise_on_failure=True)


def _check_tokenizer(config: IngestConfig, tokenizer_id: str):
    tokenizer = get_tokenizer(config.tokenizer, config.device, config.batch_size, config.precision)
    if tokenizer.tokenizer_id != tokenizer_id:
        raise TokenizerError(
            f"{config.tokenizer} now has id {tokenizer.tokenizer_id[:24]}..., the plan of {config.out} was made "
            f"with {tokenizer_id[:24]}...: its weights changed; ingest into a new --out"
        )
    return tokenizer


@task(name="prepare-ingest", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=2,
      retry_condition_fn=only_transient)
def prepare_ingest(config: IngestConfig) -> IngestPlan:
    """Load the tokenizer (its id names the shards), read the list, plan shards, write classes.json."""
    tokenizer = get_tokenizer(config.tokenizer, config.device, config.batch_size, config.precision)
    return prepare_output(config, tokenizer.tokenizer_id)


@task(name="load-ingest-plan", cache_policy=NO_CACHE, persist_result=False)
def load_ingest_plan(out: str) -> IngestPlan:
    return load_plan(out)


@task(name="rerun-targets", cache_policy=NO_CACHE, persist_result=False)
def rerun_targets(plan: IngestPlan, include_permanent: bool) -> list[tuple[ShardPlan, list[str] | None]]:
    """(shard, video ids to retry or None for a whole never-committed shard) per shard to redo."""
    targets = []
    for shard in plan.shards:
        ids = failed_video_ids(plan.config.out, shard, include_permanent=include_permanent)
        if ids is None or ids:
            targets.append((shard, None if ids is None else sorted(ids)))
    return targets


@task(name="tokenize-shard", tags=["gpu"], cache_policy=CommittedShard(), persist_result=True,
      retries=2, retry_delay_seconds=[2, 10, 30], retry_condition_fn=only_transient)
def tokenize_shard(shard: ShardPlan, config: IngestConfig, tokenizer_id: str) -> dict:
    """Extract and commit one shard, unless its manifest says it is committed already.

    ``tokenizer_id``: the plan's (kind + weights sha256); the weights loaded now must match it.
    """
    done = committed_stats(config.out, shard.shard_id)
    if done is not None:
        return {**done, "skipped": True}
    interrupts.check_stop(f"shard {shard.shard_id}")
    tokenizer = _check_tokenizer(config, tokenizer_id)
    return {**process_shard(shard, config, tokenizer, run_id=str(flow_run.id)), "skipped": False}


@task(name="retry-shard", tags=["gpu"], cache_policy=CommittedShard(), persist_result=True,
      retries=2, retry_delay_seconds=[2, 10, 30], retry_condition_fn=only_transient)
def retry_shard(shard: ShardPlan, config: IngestConfig, tokenizer_id: str, retry_ids: list[str] | None) -> dict:
    """Re-extract the failed videos of a shard (all of it when never committed).

    The cache key holds the manifest this retry starts from: a finished retry changes the
    manifest, so the same failures are never retried twice from one state.
    """
    interrupts.check_stop(f"shard {shard.shard_id}")
    tokenizer = _check_tokenizer(config, tokenizer_id)
    ids = None if retry_ids is None else set(retry_ids)
    return {**process_shard(shard, config, tokenizer, retry_ids=ids, run_id=str(flow_run.id)), "skipped": False}
