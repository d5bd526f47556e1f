"""Video lists: CSV, JSONL, Parquet and mmaction2 text lists -> ``VideoEntry`` rows.

Columns: ``uri`` (fsspec URL or a path; relative paths resolve against ``root``, by default the
list's folder), optional ``label`` (int or class name), ``split`` and ``video_id`` (default:
derived from the uri). Video ids are made safe for file names, so they never escape a folder.
Class names get a stable index: their sorted order over the whole list (``classes.json``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict

from vimpac_core.errors import ConfigError
from vimpac_core.storage import get_fs, read_parquet

LIST_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "txt"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_ID_LEN = 120


class VideoEntry(BaseModel):
    """One video of a list. ``label`` is the class index (None when unlabelled)."""

    model_config = ConfigDict(frozen=True)

    uri: str
    video_id: str
    label: int | None = None
    split: str | None = None


def safe_video_id(text: str) -> str:
    """A file-name-safe id: only [A-Za-z0-9._-], no leading dots, never '' (hash suffix if shortened)."""
    cleaned = _UNSAFE.sub("_", text).lstrip("._-")
    if not cleaned or len(cleaned) > _MAX_ID_LEN:
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        cleaned = f"{cleaned[: _MAX_ID_LEN - 13]}-{digest}".lstrip("-") if cleaned else f"video-{digest}"
    return cleaned


def _stem_of_uri(uri: str) -> str:
    path = uri.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _resolve(uri: str, root: str) -> str:
    if "://" in uri or uri.startswith("/"):
        return uri
    return f"{root.rstrip('/')}/{uri}"


def _read_records(url: str, fmt: str) -> list[dict[str, Any]]:
    fs, path = get_fs(url)
    if fmt == "parquet":
        return read_parquet(url).to_pylist()
    with fs.open(path, "rb") as f:
        text = f.read().decode("utf-8")
    if fmt == "csv":
        return [dict(row) for row in csv.DictReader(io.StringIO(text))]
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    records = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        # mmaction2: "path label" (video lists) or "path num_frames label" (rawframe lists).
        records.append({"uri": parts[0], "label": parts[-1] if len(parts) > 1 else None})
    return records


def _label_kind(labels: list[Any]) -> str:
    present = [x for x in labels if x is not None and x != ""]
    if not present:
        return "none"
    if all(isinstance(x, int) or (isinstance(x, str) and x.strip().lstrip("-").isdigit()) for x in present):
        return "int"
    return "name"


def read_video_list(
    url: str, *, root: str | None = None, list_format: str | None = None
) -> tuple[list[VideoEntry], list[str]]:
    """Read a video list.

    Returns:
        (entries in list order, class names whose position is the label index). For integer
        labels the class names are ``["0", "1", ..., str(max)]``; unlabelled lists give ``[]``.
    """
    fmt = list_format or next((v for k, v in LIST_FORMATS.items() if url.lower().endswith(k)), None)
    if fmt is None:
        raise ConfigError(f"cannot tell the format of video list {url!r}: pass list_format (csv, jsonl, parquet, txt)")
    try:
        records = _read_records(url, fmt)
    except FileNotFoundError as exc:
        raise ConfigError(f"video list {url!r} does not exist") from exc
    if not records:
        raise ConfigError(f"video list {url!r} has no rows")
    if any(not r.get("uri") for r in records):
        raise ConfigError(f"video list {url!r}: every row needs a 'uri' (got columns {sorted(records[0])})")
    base = root if root is not None else url.rsplit("/", 1)[0] if "/" in url else "."
    if "://" not in base:  # local roots become absolute: the plan must not depend on the cwd
        base = os.path.abspath(base)
    labels = [r.get("label") for r in records]
    kind = _label_kind(labels)
    if kind == "int":
        ints = [None if x in (None, "") else int(x) for x in labels]
        classes = [str(i) for i in range(max((i for i in ints if i is not None), default=-1) + 1)]
    elif kind == "name":
        names = sorted({str(x) for x in labels if x not in (None, "")})
        index = {n: i for i, n in enumerate(names)}
        ints = [None if x in (None, "") else index[str(x)] for x in labels]
        classes = names
    else:
        ints, classes = [None] * len(records), []
    uris = [_resolve(str(r["uri"]), base) for r in records]
    stems = Counter(_stem_of_uri(u) for u in uris)
    entries = []
    for rec, uri, label in zip(records, uris, ints, strict=True):
        given = rec.get("video_id")
        if given:
            vid = safe_video_id(str(given))
        elif stems[_stem_of_uri(uri)] > 1:  # same file name in two folders: keep both apart
            vid = safe_video_id(f"{_stem_of_uri(uri)}-{hashlib.sha256(uri.encode()).hexdigest()[:8]}")
        else:
            vid = safe_video_id(_stem_of_uri(uri))
        split = rec.get("split")
        entries.append(VideoEntry(uri=uri, video_id=vid, label=label, split=None if split in (None, "") else str(split)))
    dupes = [v for v, n in Counter(e.video_id for e in entries).items() if n > 1]
    if dupes:
        raise ConfigError(f"video list {url!r} has duplicate video ids {dupes[:5]}: make uris or video_id unique")
    return entries, classes
