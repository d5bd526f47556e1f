"""Tiny annotation folders in each dataset's real layout (names, columns, quirks such as UCF101's
Windows line ends and HMDB51's trailing spaces), shared by the reader and CLI tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

SSV2_LABELS = {"Holding something next to something": "0", "Pushing something from left to right": "1",
               "Putting something on a surface": "2"}


def write_ssv2(folder: Path, *, renamed: bool = False) -> Path:
    """The 20BN download's ``labels/`` folder (or mmaction2's renamed files when ``renamed``)."""
    labels = folder if renamed else folder / "labels"
    labels.mkdir(parents=True, exist_ok=True)
    name = (lambda n: f"something-something-v2-{n}.json") if renamed else (lambda n: f"{n}.json")
    (labels / name("labels")).write_text(json.dumps(SSV2_LABELS, indent=4))
    train = [
        {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
         "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks vaporub bottle"]},
        {"id": "42326", "label": "putting a white remote on a surface", "template": "Putting [something] on a surface",
         "placeholders": ["a white remote"]},
    ]
    val = [{"id": "74225", "label": "pushing a pen from left to right",
            "template": "Pushing [something] from left to right", "placeholders": ["a pen"]}]
    (labels / name("train")).write_text(json.dumps(train))
    (labels / name("validation")).write_text(json.dumps(val))
    (labels / name("test")).write_text(json.dumps([{"id": "1420"}]))  # no labels: never read
    return folder


def write_diving48(folder: Path, *, vocab: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train = [{"vid_name": "-mmq0PT-u8k_00155", "label": 2, "start_frame": 0, "end_frame": 76},
             {"vid_name": "-mmq0PT-u8k_00156", "label": 0, "start_frame": 0, "end_frame": 104}]
    test = [{"vid_name": "2x1lIrgKxYo_00003", "label": 1, "start_frame": 0, "end_frame": 91}]
    (folder / "Diving48_V2_train.json").write_text(json.dumps(train))
    (folder / "Diving48_V2_test.json").write_text(json.dumps(test))
    if vocab:
        names = [["Back", "15som", "05Twis", "FREE"], ["Back", "15som", "15Twis", "FREE"],
                 ["Back", "15som", "25Twis", "FREE"]]
        (folder / "Diving48_vocab.json").write_text(json.dumps(names))
    return folder


UCF_CLASSES = ["ApplyEyeMakeup", "ApplyLipstick", "HandstandPushups", "HammerThrow", "Hammering"]


def write_ucf101(folder: Path) -> Path:
    """``ucfTrainTestlist/`` as in UCF101TrainTestSplits-RecognitionTask.zip (CRLF line ends)."""
    lists = folder / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    crlf = lambda lines: "".join(f"{line}\r\n" for line in lines).encode()  # noqa: E731
    (lists / "classInd.txt").write_bytes(crlf(f"{i + 1} {c}" for i, c in enumerate(UCF_CLASSES)))
    for k in (1, 2, 3):
        g_train, g_test = (8, 1) if k == 1 else (1, 8)
        train = [f"{c}/v_{c.replace('Handstand', 'HandStand')}_g{g_train:02d}_c01.avi {i + 1}"
                 for i, c in enumerate(UCF_CLASSES)]
        test = [f"{c}/v_{c.replace('Handstand', 'HandStand')}_g{g_test:02d}_c0{j}.avi"
                for c in UCF_CLASSES[:2] for j in (1, 2)]
        (lists / f"trainlist0{k}.txt").write_bytes(crlf(train))
        (lists / f"testlist0{k}.txt").write_bytes(crlf(test))
    return folder


HMDB_CLASSES = ["brush_hair", "cartwheel", "climb_stairs"]


def write_hmdb51(folder: Path) -> Path:
    """``testTrainMulti_7030_splits/`` as in test_train_splits.rar ("<video> <id> " per line)."""
    splits = folder / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True, exist_ok=True)
    for c in HMDB_CLASSES:
        videos = [f"{c}_video_{n}_u_cm_np1_fr_goo_0.avi" for n in range(3)]
        for k in (1, 2, 3):
            ids = [(n + k) % 3 for n in range(3)]  # each split: one train (1), one test (2), one unused (0)
            (splits / f"{c}_test_split{k}.txt").write_text("".join(f"{v} {i} \n" for v, i in zip(videos, ids, strict=True)))
    return folder


K400_ROWS = [
    ("abseiling", "--07WQ2iBlw", 1, 11, "train"),
    ("air drumming", "--33Lscn6sk", 4, 14, "train"),
    ("air drumming", "-0ZSbTfvHh4", 30, 40, "train"),
    ("abseiling", "-3B32lodo2M", 59, 69, "val"),
    ("zumba", "-3B32lodo2M", 100, 110, "val"),  # a second clip of the same youtube video
]


def write_kinetics400(folder: Path, *, prefix: str = "", rows: list[tuple] = K400_ROWS) -> Path:
    """The official CSVs (train.csv / validate.csv, or kinetics_400_*.csv with ``prefix``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train"), ("val", "validate")):
        with open(folder / f"{prefix}{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            writer.writerows([r for r in rows if r[4] == split])
    (folder / "notes.csv").write_text("a,b\n1,2\n")  # another CSV in the folder is skipped
    return folder
