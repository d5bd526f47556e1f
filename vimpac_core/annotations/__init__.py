"""Readers of the paper's datasets' own annotation files, turning them into our video lists.

``make_list("ucf101", "ucfTrainTestlist", "UCF-101", split_id=1)`` -> ``DatasetList`` (rows with
uri, label, split, video_id, optional start/end; the class names in the dataset's order), and
``write_video_list`` writes it as a list ``vimpac ingest`` reads plus a ``.classes.json`` for
``--class-index``. One module per dataset; ``DATASETS`` is the registry by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from vimpac_core.annotations.base import (
    DatasetList,
    ListRow,
    check_unique_ids,
    classes_url,
    missing_videos,
    write_video_list,
)
from vimpac_core.annotations.diving48 import read_diving48
from vimpac_core.annotations.hmdb51 import read_hmdb51
from vimpac_core.annotations.kinetics import DEFAULT_TEMPLATE, read_kinetics400
from vimpac_core.annotations.ssv2 import read_ssv2
from vimpac_core.annotations.ucf101 import read_ucf101
from vimpac_core.errors import ConfigError
from vimpac_core.inputs import safe_video_id


@dataclass(frozen=True)
class Dataset:
    """A dataset we can read: its reader, official class count, splits and which options it takes."""

    read: Callable[..., DatasetList]
    num_classes: int
    splits: tuple[str, ...]
    split_ids: bool = False  # UCF101 / HMDB51: official splits 1-3
    uri_template: bool = False  # Kinetics: where the videos are


DATASETS: dict[str, Dataset] = {
    "ssv2": Dataset(read_ssv2, 174, ("train", "val")),
    "diving48": Dataset(read_diving48, 48, ("train", "test")),
    "ucf101": Dataset(read_ucf101, 101, ("train", "test"), split_ids=True),
    "hmdb51": Dataset(read_hmdb51, 51, ("train", "test"), split_ids=True),
    "kinetics400": Dataset(read_kinetics400, 400, ("train", "val", "test"), uri_template=True),
}


def make_list(dataset: str, annotation_dir: str, videos_root: str, *, split_id: int | None = None,
              uri_template: str | None = None, splits: Iterable[str] | None = None) -> DatasetList:
    """Read ``dataset``'s annotation files in ``annotation_dir`` into a list of videos under
    ``videos_root``, keeping only ``splits`` (None: all).

    Raises:
        ConfigError: an unknown dataset, an option the dataset does not take (split_id for
            UCF101/HMDB51 only, uri_template for Kinetics only), or annotation files that are
            missing or not in the dataset's format (the message names the file).
    """
    spec = DATASETS.get(dataset)
    if spec is None:
        raise ConfigError(f"dataset {dataset!r} is not one of {sorted(DATASETS)}")
    kwargs: dict = {}
    if split_id is not None:
        if not spec.split_ids:
            raise ConfigError(f"{dataset} has one official split: --split-id is for ucf101 and hmdb51")
        kwargs["split_id"] = split_id
    if uri_template is not None:
        if not spec.uri_template:
            raise ConfigError(f"{dataset}: --uri-template is for kinetics400 (its videos are named by the dataset)")
        kwargs["uri_template"] = uri_template
    made = spec.read(annotation_dir, videos_root, **kwargs).only(splits)
    # The ids ingest will use (file-name safe: '-mmq0PT-u8k_00155' -> 'mmq0PT-u8k_00155'), unique.
    made.rows = [replace(r, video_id=safe_video_id(r.video_id)) for r in made.rows]
    check_unique_ids(made.rows, dataset)
    return made


__all__ = [
    "DATASETS",
    "DEFAULT_TEMPLATE",
    "Dataset",
    "DatasetList",
    "ListRow",
    "classes_url",
    "make_list",
    "missing_videos",
    "write_video_list",
]
