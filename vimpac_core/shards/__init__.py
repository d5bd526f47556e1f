"""Token shards: the Parquet schema, shard writer, manifest, and reader/index."""

from vimpac_core.shards.schema import (
    CLASSES_FILE,
    MANIFEST_DIR,
    MANIFEST_SCHEMA,
    SHARD_SCHEMA,
    SHARDS_DIR,
    tokens_to_grid,
)

__all__ = [
    "CLASSES_FILE",
    "MANIFEST_DIR",
    "MANIFEST_SCHEMA",
    "SHARD_SCHEMA",
    "SHARDS_DIR",
    "tokens_to_grid",
]
