"""Video lists: CSV, JSONL, Parquet and mmaction2 text lists -> ``VideoEntry`` rows.

Columns: ``uri`` (fsspec URL or a path; relative paths resolve against ``root``, by default the
list's folder), optional ``label`` (int or class name), ``split``, ``video_id`` (default:
derived from the uri) and ``start``/``end`` (seconds: a segment of a longer video, as Kinetics
clips are; its id then carries the window). Video ids are made safe for file names, so they
never escape a folder.
Class names get a stable index: their sorted order over the whole list (``classes.json``), or
their position in a given class index (the train list's ``classes.json``, for a val list).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vimpac_core.errors import ConfigError
from vimpac_core.shards.schema import CLASSES_FILE
from vimpac_core.storage import get_fs, join, read_bytes, read_parquet

LIST_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "txt"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_ID_LEN = 120


class VideoEntry(BaseModel):
    """One video of a list. ``label`` is the class index (None when unlabelled); ``start``/``end``
    (seconds of source time, None: the video's start / end) make it a segment of ``uri``."""

    model_config = ConfigDict(frozen=True)

    uri: str = Field(description="Where the video is: a path or any fsspec / http(s) URL.")
    video_id: str = Field(description="The video's file-name-safe id, unique in its list.")
    label: int | None = Field(None, description="Class index; None: unlabelled.")
    split: str | None = Field(None, description="The list's split of this video (train, test...); None: none given.")
    start: float | None = Field(None, description="Segment start in seconds of source time; None: the video's start.")
    end: float | None = Field(None, description="Segment end in seconds of source time; None: the video's end.")

    @property
    def window(self) -> tuple[float, float] | None:
        """(start, end) seconds of the segment; None for a whole video."""
        if self.start is None and self.end is None:
            return None
        return (self.start or 0.0, math.inf if self.end is None else self.end)

    @property
    def source_id(self) -> str:
        """The name of the source file's copy in a video store: shared by every segment of a file
        (one download serves them all); a whole video's own id."""
        return self.video_id if self.window is None else safe_video_id(_stem_of_uri(self.uri))

    def identity(self) -> dict[str, Any]:
        """What defines this video's rows (shard ids hash it): start/end only when set, so lists
        without segments keep the shard ids they had before segments existed."""
        return self.model_dump(exclude=set() if self.window else {"start", "end"})


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


def _seconds_tag(seconds: float) -> str:
    """14 -> '000014' (Kinetics' clip names), 14.5 -> '14.500'."""
    return f"{int(seconds):06d}" if float(seconds).is_integer() else f"{seconds:.3f}"


def _base_id(uri: str, start: float | None, end: float | None) -> str:
    """The id a row gets from its uri: the file's stem, plus the window for a segment."""
    stem = _stem_of_uri(uri)
    if start is None and end is None:
        return stem
    return f"{stem}_{_seconds_tag(start or 0.0)}_{'end' if end is None else _seconds_tag(end)}"


def _seconds(value: Any, column: str, row: int, url: str) -> float | None:
    """A start/end cell as seconds (None when empty); ConfigError naming the row otherwise."""
    value = _clean_label(value)
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"video list {url!r}, row {row + 1}: {column} {value!r} is not a time in seconds (>= 0)")
    return seconds


def _window(rec: dict[str, Any], row: int, url: str) -> tuple[float | None, float | None]:
    start, end = _seconds(rec.get("start"), "start", row, url), _seconds(rec.get("end"), "end", row, url)
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"video list {url!r}, row {row + 1}: end {end:g} is not after start {start:g}; "
                          "a segment is [start, end) in seconds")
    return start, end


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


_INTEGRAL = re.compile(r"[+-]?\d+(\.0*)?")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _clean_label(value: Any) -> Any:
    """None for a missing label (None, '', NaN, as pandas writes them); else the value, trimmed."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        value = value.strip()
        return value if value and value.lower() not in ("nan", "none", "null") else None
    return value


def _is_numeric(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_NUMBER.fullmatch(value))
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _class_index(value: Any, row: int, url: str) -> int:
    """A numeric label as a class index: 3, 3.0 and "3.0" -> 3; negative or fractional: ConfigError."""
    if isinstance(value, str):
        number = int(value.split(".", 1)[0]) if _INTEGRAL.fullmatch(value) else None
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else None
    else:
        number = value
    if number is None or number < 0:
        raise ConfigError(
            f"video list {url!r}, row {row + 1}: label {value!r} is not a class index (an integer >= 0) nor a "
            "class name; fix the row, or leave its label empty for an unlabelled video")
    return number


def _load_class_index(class_index: str | Sequence[str]) -> list[str]:
    """Class names from a list, a ``classes.json`` URL or an ingest output folder holding one."""
    if not isinstance(class_index, str):
        names = list(class_index)
        url = "the given class index"
    else:
        url = class_index if class_index.endswith(".json") else join(class_index, CLASSES_FILE)
        try:
            names = json.loads(read_bytes(url))["classes"]
        except FileNotFoundError as exc:
            raise ConfigError(f"class index {url!r} does not exist; pass the {CLASSES_FILE} of the train ingest") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"class index {url!r} is not a {CLASSES_FILE} ({{\"classes\": [name, ...]}})") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"{url}: the class index must be a list of distinct class names")
    return names


def _label_indices(labels: list[Any], url: str, classes: list[str] | None) -> tuple[list[int | None], list[str]]:
    """(label index per row, class names). Numeric labels are indices; other labels are names whose
    index is their sorted position, or their position in ``classes`` when that is given."""
    present = [(i, x) for i, x in enumerate(labels) if x is not None]
    ints: list[int | None] = [None] * len(labels)
    if present and all(_is_numeric(x) for _, x in present):
        for i, x in present:
            ints[i] = _class_index(x, i, url)
        if classes is None:
            return ints, [str(i) for i in range(max(ints[i] for i, _ in present) + 1)]
        row = next((i for i, _ in present if ints[i] >= len(classes)), None)
        if row is not None:
            raise ConfigError(f"video list {url!r}, row {row + 1}: label {ints[row]} is out of range of the class "
                              f"index ({len(classes)} classes)")
        return ints, classes
    names = {i: str(x) for i, x in present}
    if classes is None:
        classes = sorted(set(names.values()))
    index = {n: k for k, n in enumerate(classes)}
    unknown = sorted(set(names.values()) - index.keys())
    if unknown:
        raise ConfigError(f"video list {url!r} has labels not in the class index: {unknown[:10]}"
                          f"{' ...' if len(unknown) > 10 else ''}; the index has {len(classes)} classes")
    for i, name in names.items():
        ints[i] = index[name]
    return ints, classes


def read_video_list(
    url: str, *, root: str | None = None, list_format: str | None = None,
    class_index: str | Sequence[str] | None = None,
) -> tuple[list[VideoEntry], list[str]]:
    """Read a video list.

    Labels: integers (or integral floats such as 2.0 from a pandas column with NaNs) are class
    indices; other text is a class name. Empty, None and NaN labels mean unlabelled. Negative or
    fractional numbers raise ConfigError naming the row (rows count the list's videos from 1).

    Args:
        class_index: the classes of another list (e.g. the train list's), so that this one (e.g.
            val) maps its names to the same indices: a list of names, a ``classes.json`` URL or an
            ingest output folder holding one. Names missing from it raise ConfigError.

    Returns:
        (entries in list order, class names whose position is the label index). Without
        ``class_index``: for integer labels ``["0", "1", ..., str(max)]``, for names their sorted
        order; unlabelled lists give ``[]``. With it: the given names.
    """
    fmt = list_format or next((v for k, v in LIST_FORMATS.items() if url.lower().endswith(k)), None)
    if fmt is None:
        raise ConfigError(f"cannot tell the format of video list {url!r}: name it .csv, .jsonl, .parquet or .txt, or pass --list-format (csv, jsonl, parquet or txt)")
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
    given = None if class_index is None else _load_class_index(class_index)
    ints, classes = _label_indices([_clean_label(r.get("label")) for r in records], url, given)
    uris = [_resolve(str(r["uri"]), base) for r in records]
    windows = [_window(r, i, url) for i, r in enumerate(records)]
    bases = [_base_id(u, *w) for u, w in zip(uris, windows, strict=True)]
    counts = Counter(bases)
    entries = []
    for rec, uri, label, window, base_id in zip(records, uris, ints, windows, bases, strict=True):
        given = rec.get("video_id")
        if given:
            vid = safe_video_id(str(given))
        elif counts[base_id] > 1:  # same file name in two folders: keep both apart
            vid = safe_video_id(f"{base_id}-{hashlib.sha256(uri.encode()).hexdigest()[:8]}")
        else:
            vid = safe_video_id(base_id)
        split = rec.get("split")
        entries.append(VideoEntry(uri=uri, video_id=vid, label=label, split=None if split in (None, "") else str(split),
                                  start=window[0], end=window[1]))
    dupes = [v for v, n in Counter(e.video_id for e in entries).items() if n > 1]
    if dupes:
        raise ConfigError(f"video list {url!r} has duplicate video ids {dupes[:5]}: make uris or video_id unique")
    return entries, classes
