"""UCF101: the official split files (``ucfTrainTestlist/``) of split 1, 2 or 3 -> a video list.

``classInd.txt`` ("1 ApplyEyeMakeup", 1-based: the label is one less), ``trainlist0N.txt``
("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1") and ``testlist0N.txt``
("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"); a video's class is its folder. Videos are
``<class>/<name>.avi`` under the videos root (the UCF-101 archive's layout). Splits ``train``
and ``test``; the video id is the file's stem.
"""

from __future__ import annotations

from vimpac_core.annotations.base import (
    DatasetList,
    ListRow,
    check_split_id,
    file_stem,
    find_file,
    split_lines,
    video_uri,
)
from vimpac_core.errors import ConfigError

_DIRS = ("ucfTrainTestlist",)


def _class_index(url: str) -> list[str]:
    numbered = {}
    for parts in split_lines(url):
        if len(parts) != 2 or not parts[0].isdigit():
            raise ConfigError(f"{url}: expected lines '<1-based index> <class>', got {' '.join(parts)!r}")
        numbered[int(parts[0]) - 1] = parts[1]
    if sorted(numbered) != list(range(len(numbered))):
        raise ConfigError(f"{url}: class indices must be 1..{len(numbered)}, each once")
    return [numbered[i] for i in range(len(numbered))]


def read_ucf101(annotation_dir: str, videos_root: str, split_id: int = 1) -> DatasetList:
    check_split_id("ucf101", split_id)
    ind_url = find_file(annotation_dir, ("classInd.txt",), "ucf101 class index", _DIRS)
    classes = _class_index(ind_url)
    index = {name: i for i, name in enumerate(classes)}
    rows = []
    for split, prefix in (("train", "trainlist"), ("test", "testlist")):
        url = find_file(annotation_dir, (f"{prefix}{split_id:02d}.txt",), f"ucf101 {split} list", _DIRS)
        for parts in split_lines(url):
            path = parts[0]
            folder = path.split("/", 1)[0] if "/" in path else None
            if folder not in index:
                raise ConfigError(f"{url}: {path!r} is not under a class folder of {ind_url}")
            label = index[folder]
            # trainlists repeat the 1-based class index: it must agree with the folder
            if len(parts) > 1 and (not parts[1].isdigit() or int(parts[1]) - 1 != label):
                raise ConfigError(f"{url}: {path!r} has label {parts[1]!r} but its folder is class {label + 1}")
            rows.append(ListRow(video_uri(videos_root, path), label, split, file_stem(path)))
    return DatasetList("ucf101", rows, classes, {"split_id": split_id})
