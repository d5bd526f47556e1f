"""Diving48 V2: ``Diving48_V2_train.json`` / ``Diving48_V2_test.json`` -> a video list.

Each file is [{"vid_name": "-mmq0PT-u8k_00155", "label": 0, "start_frame": 0, "end_frame": 76},
...]; the videos are ``<vid_name>.mp4`` (already trimmed, so the frame range is not used).
The optional ``Diving48_vocab.json`` ([["Back", "15som", "05Twis", "FREE"], ...], one entry
per class) names the classes ("Back_15som_05Twis_FREE"); without it they are "0".."47".
Splits ``train`` and ``test``. The paper's sizes (15027/1970) are V2's, not V1's.
"""

from __future__ import annotations

from vimpac_core.annotations.base import DatasetList, ListRow, find_file, read_json, video_uri
from vimpac_core.errors import ConfigError

_FILES = {"train": "Diving48_V2_train.json", "test": "Diving48_V2_test.json"}
_VOCAB = "Diving48_vocab.json"


def _vocab_names(annotation_dir: str) -> list[str] | None:
    try:
        url = find_file(annotation_dir, (_VOCAB,), "diving48 vocabulary")
    except ConfigError:
        return None  # optional
    vocab = read_json(url)
    if not isinstance(vocab, list) or not all(isinstance(v, list) for v in vocab):
        raise ConfigError(f"{url}: expected a list of [takeoff, somersault, twist, flight] lists")
    return ["_".join(str(p) for p in v) for v in vocab]


def read_diving48(annotation_dir: str, videos_root: str) -> DatasetList:
    rows = []
    for split, name in _FILES.items():
        url = find_file(annotation_dir, (name,), f"diving48 {split} annotations")
        for k, item in enumerate(read_json(url)):
            try:
                vid, label = str(item["vid_name"]), int(item["label"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{url}: item {k + 1} lacks 'vid_name' or an integer 'label' ({exc})") from exc
            if label < 0:
                raise ConfigError(f"{url}: video {vid}: label {label} is negative")
            rows.append(ListRow(video_uri(videos_root, f"{vid}.mp4"), label, split, vid))
    classes = _vocab_names(annotation_dir)
    top = max(r.label for r in rows)
    if classes is None:
        classes = [str(i) for i in range(top + 1)]
    elif top >= len(classes):
        raise ConfigError(f"diving48: label {top} is out of range of {_VOCAB} ({len(classes)} classes)")
    return DatasetList("diving48", rows, classes)
