"""What every annotation reader shares: the rows it makes, finding and reading the dataset's own
files, and writing the video list that ``vimpac ingest`` reads (``vimpac_core/inputs.py``).

A list row has the columns of ``inputs.VideoEntry``: ``uri`` (the video under the videos root),
``label`` (the dataset's official 0-based class index), ``split``, ``video_id`` and, for a
segment of a longer video, ``start``/``end`` seconds. The class names, in index order, go to a
``<list>.classes.json`` next to the list: pass it to ``vimpac ingest --class-index`` so the
ingest's ``classes.json`` names the classes in the dataset's own order.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from vimpac_core.errors import ConfigError
from vimpac_core.storage import atomic_write_bytes, exists, join, read_bytes

LIST_SUFFIXES = (".csv", ".jsonl", ".parquet")


@dataclass(frozen=True)
class ListRow:
    """One video of a made list (see the module docstring for the columns)."""

    uri: str
    label: int | None
    split: str
    video_id: str
    start: float | None = None
    end: float | None = None


@dataclass
class DatasetList:
    """A reader's result: rows in the dataset's order and the class names in index order."""

    dataset: str
    rows: list[ListRow]
    classes: list[str]
    notes: dict[str, Any] = field(default_factory=dict)

    def only(self, splits: Iterable[str] | None) -> DatasetList:
        """The rows of the given splits (all rows for None); the classes stay whole."""
        if splits is None:
            return self
        wanted = set(splits)
        have = {r.split for r in self.rows}
        unknown = sorted(wanted - have)
        if unknown:
            raise ConfigError(f"{self.dataset}: no rows of split {unknown}; the annotations give {sorted(have)}")
        return DatasetList(self.dataset, [r for r in self.rows if r.split in wanted], self.classes, self.notes)


def video_uri(videos_root: str, relative: str) -> str:
    """A video's uri: ``relative`` under ``videos_root`` (a URL in ``relative`` is kept as it is).
    Local roots become absolute, so a list never depends on the folder it is read from."""
    if "://" in relative or relative.startswith("/"):
        return relative
    root = videos_root if "://" in videos_root else os.path.abspath(videos_root)
    return join(root, relative)


def find_file(annotation_dir: str, names: Iterable[str], what: str, subdirs: Iterable[str] = ()) -> str:
    """The URL of the first of ``names`` found in ``annotation_dir`` (or one of its ``subdirs``)."""
    names = list(names)
    for folder in ("", *subdirs):
        base = join(annotation_dir, folder) if folder else annotation_dir
        for name in names:
            url = join(base, name)
            if exists(url):
                return url
    where = " or ".join([annotation_dir, *(join(annotation_dir, d) for d in subdirs)])
    raise ConfigError(f"{what}: none of {names} in {where}; pass the folder that holds the dataset's annotation files")


def read_text(url: str) -> str:
    """A text annotation file (UTF-8, a BOM and Windows line ends tolerated)."""
    try:
        return read_bytes(url).decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(f"annotation file {url!r} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"annotation file {url!r} is not UTF-8 text: {exc}") from exc


def split_lines(url: str) -> list[list[str]]:
    """The whitespace-split words of each non-empty line of a text file."""
    return [line.split() for line in read_text(url).splitlines() if line.strip()]


def file_stem(path: str) -> str:
    """'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi' -> 'v_ApplyEyeMakeup_g08_c01'."""
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


SPLIT_IDS = (1, 2, 3)


def check_split_id(dataset: str, split_id: int) -> None:
    """UCF101 and HMDB51 have official splits 1, 2 and 3."""
    if split_id not in SPLIT_IDS:
        raise ConfigError(f"{dataset}: split_id {split_id!r} is not one of {SPLIT_IDS}")


def read_json(url: str) -> Any:
    try:
        return json.loads(read_text(url))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"annotation file {url!r} is not valid JSON: {exc}") from exc


def check_unique_ids(rows: list[ListRow], dataset: str) -> None:
    dupes = [v for v, n in Counter(r.video_id for r in rows).items() if n > 1]
    if dupes:
        raise ConfigError(f"{dataset}: the annotations name video ids more than once: {dupes[:5]}; "
                          "check that the annotation files are not listed twice")


def missing_videos(rows: list[ListRow]) -> list[str]:
    """Video ids whose local file does not exist (remote uris are not checked: too slow)."""
    return [r.video_id for r in rows if "://" not in r.uri and not os.path.isfile(r.uri)]


def classes_url(out: str) -> str:
    """``lists/ucf101.csv`` -> ``lists/ucf101.classes.json``."""
    stem = out
    for suffix in LIST_SUFFIXES:
        if out.lower().endswith(suffix):
            stem = out[: -len(suffix)]
    return f"{stem}.classes.json"


def _encode(rows: list[ListRow], fmt: str) -> bytes:
    columns = ["uri", "label", "split", "video_id"]
    if any(r.start is not None or r.end is not None for r in rows):
        columns += ["start", "end"]
    records = [{k: v for k, v in asdict(r).items() if k in columns} for r in rows]
    if fmt == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buf.getvalue().encode()
    if fmt == ".jsonl":
        return "".join(json.dumps(r) + "\n" for r in records).encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return sink.getvalue()


def write_video_list(made: DatasetList, out: str, *, overwrite: bool = False) -> str:
    """Write the list to ``out`` (.csv, .jsonl or .parquet) and its classes next to it.

    Returns:
        The URL of the classes file (``classes_url(out)``).
    Raises:
        ConfigError: unknown suffix, or ``out`` exists and ``overwrite`` is False (never
            replace a user's file unasked).
    """
    fmt = next((s for s in LIST_SUFFIXES if out.lower().endswith(s)), None)
    if fmt is None:
        raise ConfigError(f"--out {out!r}: a video list ends in {', '.join(LIST_SUFFIXES)}")
    classes = classes_url(out)
    for url in (out, classes):
        if not overwrite and exists(url):
            raise ConfigError(f"{url} already exists; pass --overwrite to replace it, or choose another --out")
    atomic_write_bytes(classes, json.dumps({"classes": made.classes}, indent=1).encode())
    atomic_write_bytes(out, _encode(made.rows, fmt))
    return classes
