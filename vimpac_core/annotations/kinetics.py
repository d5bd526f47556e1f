"""Kinetics-400: the official CSV files -> a video list, clips or segments of whole videos.

Every ``*.csv`` in the annotation folder with the columns ``label, youtube_id, time_start,
time_end, split`` is read (train.csv, validate.csv, test.csv or kinetics_400_*.csv); split
"validate" is written "val". Classes are numbered in sorted order of their names; rows without
a label (an unlabelled test file) stay unlabelled.

Where the videos are is the user's ``uri_template``, formatted per row with ``youtube_id``,
``start``/``end`` (integer seconds), ``time_start``/``time_end`` (as in the CSV), ``label``,
``label_dir`` (the label with spaces as underscores) and ``split``:
- the default ``{youtube_id}_{start:06d}_{end:06d}.mp4`` is a folder of clips cut beforehand;
- a template without start/end fields (e.g. ``{youtube_id}.mp4``) names one whole video per
  youtube id: each row becomes a segment [time_start, time_end) of it (``start``/``end``
  columns), and ingest reads every segment of a file from one download.
The video id is ``<youtube_id>_<start:06d>_<end:06d>`` either way (the clips' usual names).
"""

from __future__ import annotations

import csv
import io
import string

from vimpac_core.annotations.base import DatasetList, ListRow, read_text, video_uri
from vimpac_core.errors import ConfigError
from vimpac_core.storage import join, list_names

DEFAULT_TEMPLATE = "{youtube_id}_{start:06d}_{end:06d}.mp4"
_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_FIELDS = ("youtube_id", "start", "end", "time_start", "time_end", "label", "label_dir", "split")
_WINDOW_FIELDS = {"start", "end", "time_start", "time_end"}
_SPLITS = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}


def template_fields(template: str) -> set[str]:
    """The field names a format string uses; ConfigError for a field we do not provide."""
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"uri template {template!r} is not a format string: {exc}") from exc
    unknown = sorted(used - set(_FIELDS))
    if unknown or "" in used:
        raise ConfigError(f"uri template {template!r} uses {unknown or ['{}']}; the fields are {list(_FIELDS)}")
    return used


def _read_csv(url: str) -> list[dict[str, str]] | None:
    """The rows of a Kinetics CSV; None for a CSV of other columns."""
    reader = csv.DictReader(io.StringIO(read_text(url)))
    if not set(_COLUMNS) - {"label"} <= set(reader.fieldnames or ()):
        return None
    return list(reader)


def _seconds(text: str, column: str, url: str, row: int) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = -1.0
    if value < 0:
        raise ConfigError(f"{url}, row {row + 1}: {column} {text!r} is not a time in seconds")
    return value


def read_kinetics400(annotation_dir: str, videos_root: str, uri_template: str = DEFAULT_TEMPLATE) -> DatasetList:
    segments = not template_fields(uri_template) & _WINDOW_FIELDS
    tables = {name: _read_csv(join(annotation_dir, name)) for name in list_names(annotation_dir, ".csv")}
    tables = {name: rows for name, rows in tables.items() if rows is not None}
    if not tables:
        raise ConfigError(f"kinetics400: no CSV with columns {list(_COLUMNS)} in {annotation_dir}; pass the folder "
                          "of the official annotation files")
    labels = {(r.get("label") or "").strip() for rows in tables.values() for r in rows} - {""}
    classes = sorted(labels)
    index = {name: i for i, name in enumerate(classes)}
    rows = []
    for name, records in tables.items():
        url = join(annotation_dir, name)
        for k, rec in enumerate(records):
            split = _SPLITS.get(rec["split"].strip().lower())
            if split is None:
                raise ConfigError(f"{url}, row {k + 1}: split {rec['split']!r} is not one of {sorted(_SPLITS)}")
            t0, t1 = (_seconds(rec[c], c, url, k) for c in ("time_start", "time_end"))
            if t1 <= t0:
                raise ConfigError(f"{url}, row {k + 1}: time_end {t1:g} is not after time_start {t0:g}")
            label = (rec.get("label") or "").strip()
            ytid = rec["youtube_id"].strip()
            fields = dict(youtube_id=ytid, start=int(t0), end=int(t1), time_start=rec["time_start"],
                          time_end=rec["time_end"], label=label, label_dir=label.replace(" ", "_"), split=split)
            try:
                uri = video_uri(videos_root, uri_template.format(**fields))
            except (ValueError, IndexError) as exc:  # e.g. a number format on a text field
                raise ConfigError(f"uri template {uri_template!r} cannot format {url}, row {k + 1}: {exc}; "
                                  "start/end are integers, time_start/time_end the CSV's text") from exc
            vid = f"{ytid}_{int(t0):06d}_{int(t1):06d}"
            window = (t0, t1) if segments else (None, None)
            rows.append(ListRow(uri, index[label] if label else None, split, vid, *window))
    return DatasetList("kinetics400", rows, classes, {"segments_of_whole_videos": segments, "uri_template": uri_template})
