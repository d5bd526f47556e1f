"""What can be known before training starts, checked before any work (``--check`` and each stage).

A data folder must exist and hold committed shards (`ShardIndex.build`); its token grid must be
the model's (frame_size // downsample); its tokenizer's codebook must fit the model's vocabulary
(a code >= vocab_size would be an IndexError deep inside a rank). Shards record their tokenizer id
(``dalle:<sha>`` / ``vqvae:<sha>``); the codebook size is 8192 for DALL-E, and for a VQ-VAE the
``codebook_size`` in the tokenizer folder that the ingest plan (``ingest_plan.json``) names.
``vocab_size: auto`` takes the vocabulary from there. Errors are ConfigError naming the field.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import fsspec
import pyarrow.parquet as pq

from vimpac_core.errors import ConfigError
from vimpac_core.shards.reader import ShardIndex, ShardReadError
from vimpac_core.shards.schema import PLAN_FILE

log = logging.getLogger(__name__)
DALLE_CODES = 8192
AUTO = "auto"


@dataclass
class DataFacts:
    """The facts of one shard folder that decide whether a model fits it."""

    index: ShardIndex
    tokenizer_ids: list[str]
    codebook_size: int | None  # None: the tokenizer is not one we can size (a test tokenizer)

    @property
    def grids(self) -> set[tuple[int, int]]:
        return {(r.grid_h, r.grid_w) for v in self.index.videos for r in v.views.values()}


def build_index(url: str, field: str, split: str | None = None, storage_options: dict | None = None) -> ShardIndex:
    """ShardIndex.build, with a missing folder or no committed shard reported against ``field``."""
    try:
        return ShardIndex.build(url, split=split, storage_options=storage_options or None)
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{field}: {url!r} does not exist; give an ingest output folder (`vimpac ingest --out`)") from None
    except ShardReadError as err:
        raise ConfigError(f"{field}: {err}") from None


def _tokenizer_ids(index: ShardIndex) -> list[str]:
    ids: set[str] = set()
    for url in index.files:
        with fsspec.open(url, "rb", **index.storage_options) as handle:
            parquet = pq.ParquetFile(handle)
            if parquet.num_row_groups:
                ids.update(parquet.read_row_group(0, columns=["tokenizer"]).column("tokenizer").to_pylist())
    return sorted(ids)


def _plan_tokenizer(url: str, storage_options: dict) -> tuple[str, str] | None:
    """(tokenizer id, tokenizer spec) of the ingest plan in ``url``, when there is one."""
    fs, root = fsspec.core.url_to_fs(url, **storage_options)
    path = f"{root.rstrip('/')}/{PLAN_FILE}"
    if not fs.isfile(path):
        return None
    plan = json.loads(fs.cat_file(path))
    return plan.get("tokenizer_id", ""), str(plan.get("config", {}).get("tokenizer", ""))


def codebook_size(tokenizer_id: str, url: str, storage_options: dict | None = None) -> int | None:
    """Codes of the tokenizer ``tokenizer_id`` that wrote the shards in ``url``; None when unknown."""
    kind = tokenizer_id.partition(":")[0]
    if kind == "dalle":
        return DALLE_CODES
    if kind != "vqvae":
        return None
    planned = _plan_tokenizer(url, storage_options or {})
    if planned is None or planned[0] != tokenizer_id:
        return None
    folder = planned[1].partition(":")[2]
    try:
        with fsspec.open(f"{folder.rstrip('/')}/config.json", "rb") as handle:
            return int(json.load(handle)["codebook_size"])
    except (OSError, ValueError, KeyError):
        log.warning("the VQ-VAE folder %s of %s cannot be read: its codebook size is not checked", folder, url)
        return None


def data_facts(url: str, field: str, split: str | None = None, storage_options: dict | None = None) -> DataFacts:
    """Index ``url`` (small columns) and size its tokenizer."""
    index = build_index(url, field, split, storage_options)
    ids = _tokenizer_ids(index)
    sizes = {codebook_size(t, url, storage_options) for t in ids}
    if len(ids) > 1:
        raise ConfigError(f"{field}: {url!r} mixes shards of {len(ids)} tokenizers ({', '.join(i[:18] for i in ids)}); "
                          "use one ingest output per tokenizer")
    return DataFacts(index, ids, next(iter(sizes)) if sizes else None)


def check_fits(facts: DataFacts, field: str, *, grid_size: int, vocab_size: int) -> None:
    """The model's token grid and vocabulary fit the data of ``field``."""
    wrong = sorted(g for g in facts.grids if g != (grid_size, grid_size))
    if wrong:
        h, w = wrong[0]
        raise ConfigError(
            f"frame_size: the model expects a {grid_size}x{grid_size} token grid but {field} {facts.index.url!r} "
            f"holds {h}x{w} grids (frame_size {h * 8} at downsample 8); set frame_size to match the shards"
        )
    if facts.codebook_size is not None and facts.codebook_size > vocab_size:
        raise ConfigError(
            f"vocab_size: {vocab_size} is smaller than the codebook of the tokenizer that wrote {field} "
            f"{facts.index.url!r} ({facts.codebook_size} codes); set vocab_size to {facts.codebook_size} or 'auto'"
        )


def auto_vocab(flat: dict, field: str = "data") -> dict:
    """A flat config whose ``vocab_size`` is 'auto' -> the codebook size of the ``data`` shards'
    tokenizer (ConfigError when it cannot be known)."""
    if str(flat.get("vocab_size", "")).lower() != AUTO:
        return flat
    if not flat.get(field):
        raise ConfigError(f"vocab_size: 'auto' reads the tokenizer of {field}, which is not set")
    facts = data_facts(str(flat[field]), field, flat.get("split"), flat.get("storage_options"))
    if facts.codebook_size is None:
        raise ConfigError(
            f"vocab_size: 'auto' cannot size the tokenizer {facts.tokenizer_ids} of {flat[field]!r} "
            "(no DALL-E id, no readable VQ-VAE folder in its ingest plan); give vocab_size as a number"
        )
    return {**flat, "vocab_size": facts.codebook_size}


def check_pretrain(config) -> None:  # noqa: ANN001  (PretrainConfig)
    """Pre-training data (and the kNN set) exist, hold committed shards and fit the model."""
    m = config.model
    for field in ("data", "knn_data"):
        url = getattr(config, field)
        if url:
            split = config.split if field == "data" else None
            facts = data_facts(url, field, split, config.storage_options)
            check_fits(facts, field, grid_size=m.grid_size, vocab_size=m.vocab_size)
