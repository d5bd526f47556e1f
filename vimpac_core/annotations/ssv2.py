"""Something-Something V2: the 20BN label files -> a video list.

Files (as downloaded, in ``labels/``, or renamed as mmaction2 does):
``labels.json`` / ``something-something-v2-labels.json``: {"<class template>": "<index>"};
``train.json`` / ``something-something-v2-train.json`` and ``validation.json`` /
``something-something-v2-validation.json``: [{"id": "78687", "template": "Holding [something]
next to [something]", "label": ..., "placeholders": [...]}, ...]. A video's class is its
template with the brackets removed ("Holding something next to something"), looked up in the
labels file. Videos are ``<id>.webm`` under the videos root; splits ``train`` and ``val`` (the
test set has no public labels).
"""

from __future__ import annotations

from vimpac_core.annotations.base import DatasetList, ListRow, find_file, read_json, video_uri
from vimpac_core.errors import ConfigError

_SUBDIRS = ("labels",)
_SPLIT_FILES = {
    "train": ("something-something-v2-train.json", "train.json"),
    "val": ("something-something-v2-validation.json", "validation.json"),
}


def class_names(labels: dict, url: str) -> list[str]:
    """Names in index order from {name: "index"}; ConfigError unless the indices are 0..C-1."""
    if not isinstance(labels, dict):
        raise ConfigError(f"{url}: expected {{\"<template>\": \"<index>\"}}, got {type(labels).__name__}")
    try:
        by_index = {int(v): k for k, v in labels.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{url}: class indices must be integers ({exc})") from exc
    if sorted(by_index) != list(range(len(labels))):
        raise ConfigError(f"{url}: class indices must be 0..{len(labels) - 1}, each once")
    return [by_index[i] for i in range(len(labels))]


def template_class(template: str) -> str:
    """'Putting [something] onto [something]' -> 'Putting something onto something'."""
    return template.replace("[", "").replace("]", "")


def read_ssv2(annotation_dir: str, videos_root: str) -> DatasetList:
    labels_url = find_file(annotation_dir, ("something-something-v2-labels.json", "labels.json"), "ssv2 labels",
                           _SUBDIRS)
    classes = class_names(read_json(labels_url), labels_url)
    index = {name: i for i, name in enumerate(classes)}
    rows = []
    for split, names in _SPLIT_FILES.items():
        url = find_file(annotation_dir, names, f"ssv2 {split} annotations", _SUBDIRS)
        for k, item in enumerate(read_json(url)):
            try:
                vid, template = str(item["id"]), item["template"]
            except (KeyError, TypeError) as exc:
                raise ConfigError(f"{url}: item {k + 1} lacks 'id' or 'template' ({exc})") from exc
            name = template_class(template)
            if name not in index:
                raise ConfigError(f"{url}: video {vid}: template {template!r} ({name!r}) is not a class of {labels_url}")
            rows.append(ListRow(video_uri(videos_root, f"{vid}.webm"), index[name], split, vid))
    return DatasetList("ssv2", rows, classes)
