"""HMDB51: the official split files (``testTrainMulti_7030_splits/``) of split 1, 2 or 3 -> a list.

Per class and split, ``<class>_test_splitN.txt`` holds lines "<video>.avi <0|1|2>": 1 = train,
2 = test, 0 = not used in that split. Classes are numbered in sorted order of their names (as
mmaction2's lists are). Videos are ``<class>/<video>`` under the videos root (the archive's
per-class folders). Splits ``train`` and ``test``; the video id is the file's stem.
"""

from __future__ import annotations

import re

from vimpac_core.annotations.base import (
    DatasetList,
    ListRow,
    check_split_id,
    file_stem,
    split_lines,
    video_uri,
)
from vimpac_core.errors import ConfigError
from vimpac_core.storage import join, list_names

_DIR = "testTrainMulti_7030_splits"
_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<id>[123])\.txt$")
_SPLITS = {"1": "train", "2": "test"}


def _split_files(folder: str) -> dict[str, set[int]]:
    """{class name: split ids that have a file} of the split files in ``folder``."""
    found: dict[str, set[int]] = {}
    for name in list_names(folder, ".txt"):
        m = _FILE.match(name)
        if m:
            found.setdefault(m.group("cls"), set()).add(int(m.group("id")))
    return found


def read_hmdb51(annotation_dir: str, videos_root: str, split_id: int = 1) -> DatasetList:
    check_split_id("hmdb51", split_id)
    folder, files = annotation_dir, _split_files(annotation_dir)
    if not files:
        folder = join(annotation_dir, _DIR)
        files = _split_files(folder)
    if not files:
        raise ConfigError(f"hmdb51: no <class>_test_split<1|2|3>.txt files in {annotation_dir} or {folder}; "
                          "pass the folder of the official split files")
    classes = sorted(files)
    rows = []
    for label, name in enumerate(classes):
        if split_id not in files[name]:
            raise ConfigError(f"hmdb51: {name}_test_split{split_id}.txt is missing in {folder}")
        url = join(folder, f"{name}_test_split{split_id}.txt")
        for parts in split_lines(url):
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ConfigError(f"{url}: expected lines '<video> <0|1|2>', got {' '.join(parts)!r}")
            if parts[1] in _SPLITS:
                rows.append(ListRow(video_uri(videos_root, f"{name}/{parts[0]}"), label, _SPLITS[parts[1]],
                                    file_stem(parts[0])))
    return DatasetList("hmdb51", rows, classes, {"split_id": split_id})
