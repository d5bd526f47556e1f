"""Read token shards for training: an index of where each video's rows live, and bounded reads.

`ShardIndex.build(url)` lists the shard files under an ingest output folder (any fsspec URL:
local path, ``s3://``, ``memory://``...) and reads only their small columns (no tokens), so the
index of a million videos costs a few tens of MB. Token rows are then read one Parquet row
group at a time through `RowGroupCache`, which keeps at most ``capacity`` row groups in memory.
"""

from __future__ import annotations

import logging
import posixpath
from collections import OrderedDict
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow.parquet as pq

from vimpac_core.errors import PermanentError
from vimpac_core.shards.schema import MANIFEST_DIR, SHARD_SCHEMA, SHARDS_DIR, tokens_to_grid

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["video_id", "view", "label", "split", "num_frames", "grid_h", "grid_w"]


class ShardReadError(PermanentError):
    """A shard folder or file is missing, empty, or does not follow SHARD_SCHEMA."""


@dataclass(frozen=True)
class RowRef:
    """Where one (video, view) token row lives: file index in the index, row group, row inside it."""

    file: int
    row_group: int
    row: int
    num_frames: int
    grid_h: int
    grid_w: int


@dataclass
class IndexedVideo:
    """One video of the index: its label/split and the rows of each of its views."""

    video_id: str
    label: int | None
    split: str | None
    views: dict[str, RowRef] = field(default_factory=dict)


class ShardIndex:
    """video_id -> (file, row) per view over the shards of one folder.

    Videos are kept in a stable order (by file name, then row), so an index built twice over the
    same folder enumerates the same videos in the same order on every rank and worker.
    """

    def __init__(self, url: str, files: list[str], videos: list[IndexedVideo], storage_options: dict | None):
        self.url = url
        self.files = files
        self.videos = videos
        self.storage_options = dict(storage_options or {})
        self._by_id = {v.video_id: i for i, v in enumerate(videos)}

    @classmethod
    def build(cls, url: str, *, split: str | None = None, storage_options: dict | None = None) -> ShardIndex:
        """Index ``<url>/shards/*.parquet`` (or ``<url>/*.parquet`` when there is no shards/ folder).

        In an ingest output (a ``manifest/`` folder beside ``shards/``) only committed shards
        count: a shard file whose manifest was never written is not done (DATA.md) and is left out.
        ``split`` keeps only rows of that split (rows with a null split are kept by any filter).
        Raises ShardReadError when no shard is found or a file lacks a schema column.
        """
        fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        root = root.rstrip("/")
        folder = f"{root}/{SHARDS_DIR}" if fs.isdir(f"{root}/{SHARDS_DIR}") else root
        for listed in (folder, f"{root}/{MANIFEST_DIR}"):  # object stores cache listings: see what is new
            fs.invalidate_cache(listed)
        paths = sorted(p for p in fs.ls(folder, detail=False) if p.endswith(".parquet"))
        if fs.isdir(f"{root}/{MANIFEST_DIR}"):
            done = {posixpath.basename(p) for p in fs.ls(f"{root}/{MANIFEST_DIR}", detail=False)}
            left_out = [p for p in paths if posixpath.basename(p) not in done]
            if left_out:
                log.warning("%s: %d shard file(s) without a manifest left out (not committed; "
                            "`vimpac rerun-failed` finishes them)", url, len(left_out))
            paths = [p for p in paths if posixpath.basename(p) in done]
        if not paths:
            raise ShardReadError(f"no shard files (*.parquet) under {url!r}: run `vimpac ingest` first or fix the URL")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        files = [p if protocol in ("file", "local") else f"{protocol}://{p}" for p in paths]
        videos: dict[str, IndexedVideo] = {}
        for file_idx, path in enumerate(paths):
            with fs.open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                _check_schema(parquet, files[file_idx])
                for rg in range(parquet.num_row_groups):
                    table = parquet.read_row_group(rg, columns=INDEX_COLUMNS).to_pydict()
                    for row in range(len(table["video_id"])):
                        if split is not None and table["split"][row] not in (split, None):
                            continue
                        vid = table["video_id"][row]
                        entry = videos.setdefault(vid, IndexedVideo(vid, table["label"][row], table["split"][row]))
                        entry.views[table["view"][row]] = RowRef(
                            file_idx, rg, row, table["num_frames"][row], table["grid_h"][row], table["grid_w"][row]
                        )
        if not videos:
            raise ShardReadError(f"shards under {url!r} hold no rows" + (f" of split {split!r}" if split else ""))
        return cls(url, files, list(videos.values()), storage_options)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, video_id: str) -> IndexedVideo:
        try:
            return self.videos[self._by_id[video_id]]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in the shards under {self.url!r}") from None

    def views(self) -> list[str]:
        """Every view name present in the index, sorted."""
        return sorted({view for v in self.videos for view in v.views})

    def num_labels(self) -> int:
        """1 + the largest label, 0 when no row is labelled."""
        labels = [v.label for v in self.videos if v.label is not None]
        return max(labels) + 1 if labels else 0


def _check_schema(parquet: pq.ParquetFile, name: str) -> None:
    present = set(parquet.schema_arrow.names)
    missing = [f.name for f in SHARD_SCHEMA if f.name not in present]
    if missing:
        raise ShardReadError(f"shard {name!r} lacks columns {missing}: it was not written with SHARD_SCHEMA")


class RowGroupCache:
    """Reads token grids by RowRef, keeping at most ``capacity`` decoded row groups (LRU).

    Open one per DataLoader worker (file handles are not shared across processes).
    """

    def __init__(self, index: ShardIndex, capacity: int = 4):
        if capacity < 1:
            raise ValueError(f"RowGroupCache capacity must be >= 1, got {capacity}")
        self.index = index
        self.capacity = capacity
        self._groups: OrderedDict[tuple[int, int], list] = OrderedDict()
        self.reads = 0  # row groups read from storage (for tests and benchmarks)

    def grid(self, ref: RowRef) -> np.ndarray:
        """The int64 token grid [T, h, w] of one row."""
        tokens = self._group(ref.file, ref.row_group)[ref.row]
        return tokens_to_grid(np.asarray(tokens), ref.num_frames, ref.grid_h, ref.grid_w)

    def _group(self, file: int, row_group: int) -> list:
        key = (file, row_group)
        if key in self._groups:
            self._groups.move_to_end(key)
            return self._groups[key]
        url = self.index.files[file]
        with fsspec.open(url, "rb", **self.index.storage_options) as handle:
            column = pq.ParquetFile(handle).read_row_group(row_group, columns=["tokens"]).column("tokens")
        # One numpy array per row: flat uint16 values sliced by the list offsets, no Python ints.
        chunk = column.combine_chunks()
        offsets = chunk.offsets.to_numpy()
        values = chunk.values.to_numpy(zero_copy_only=False)
        rows = [values[offsets[i] : offsets[i + 1]] for i in range(len(chunk))]
        self.reads += 1
        self._groups[key] = rows
        if len(self._groups) > self.capacity:
            self._groups.popitem(last=False)
        return rows
