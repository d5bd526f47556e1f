"""Each dataset's reader on tiny files in the dataset's own format (tests/annotations/formats.py)."""

from __future__ import annotations

import json

import pytest

from vimpac_core.annotations import DATASETS, make_list, write_video_list
from vimpac_core.errors import ConfigError
from vimpac_core.inputs import read_video_list

from .formats import (
    HMDB_CLASSES,
    UCF_CLASSES,
    write_diving48,
    write_hmdb51,
    write_kinetics400,
    write_ssv2,
    write_ucf101,
)

ROOT = "/data/videos"


def _table(made) -> list[tuple]:
    return [(r.uri, r.label, r.split, r.video_id) for r in made.rows]


@pytest.mark.parametrize("renamed", [False, True])
def test_ssv2_label_is_the_template_without_brackets(tmp_path, renamed):
    made = make_list("ssv2", str(write_ssv2(tmp_path, renamed=renamed)), ROOT)
    assert made.classes == ["Holding something next to something", "Pushing something from left to right",
                            "Putting something on a surface"]
    assert _table(made) == [(f"{ROOT}/78687.webm", 0, "train", "78687"), (f"{ROOT}/42326.webm", 2, "train", "42326"),
                            (f"{ROOT}/74225.webm", 1, "val", "74225")]


def test_ssv2_unknown_template_names_the_video(tmp_path):
    write_ssv2(tmp_path)
    path = tmp_path / "labels" / "validation.json"
    path.write_text(json.dumps([{"id": "9", "template": "Spinning [something] around"}]))
    with pytest.raises(ConfigError, match=r"validation.json: video 9: template 'Spinning \[something\] around'"):
        make_list("ssv2", str(tmp_path), ROOT)


@pytest.mark.parametrize("vocab", [True, False])
def test_diving48_v2(tmp_path, vocab):
    made = make_list("diving48", str(write_diving48(tmp_path, vocab=vocab)), ROOT)
    # ids as ingest makes them (file-name safe: no leading '-')
    assert _table(made) == [(f"{ROOT}/-mmq0PT-u8k_00155.mp4", 2, "train", "mmq0PT-u8k_00155"),
                            (f"{ROOT}/-mmq0PT-u8k_00156.mp4", 0, "train", "mmq0PT-u8k_00156"),
                            (f"{ROOT}/2x1lIrgKxYo_00003.mp4", 1, "test", "2x1lIrgKxYo_00003")]
    assert made.classes == (["Back_15som_05Twis_FREE", "Back_15som_15Twis_FREE", "Back_15som_25Twis_FREE"]
                            if vocab else ["0", "1", "2"])


@pytest.mark.parametrize("split_id", [1, 2, 3])
def test_ucf101_classind_is_one_based_and_splits_are_chosen(tmp_path, split_id):
    made = make_list("ucf101", str(write_ucf101(tmp_path)), ROOT, split_id=split_id)
    assert made.classes == UCF_CLASSES  # classInd order, not sorted order (HammerThrow < Hammering)
    train = [r for r in made.rows if r.split == "train"]
    test = [r for r in made.rows if r.split == "test"]
    g_train, g_test = (8, 1) if split_id == 1 else (1, 8)
    assert [r.label for r in train] == [0, 1, 2, 3, 4]
    assert train[2].uri == f"{ROOT}/HandstandPushups/v_HandStandPushups_g{g_train:02d}_c01.avi"
    assert train[2].video_id == f"v_HandStandPushups_g{g_train:02d}_c01"
    assert [(r.label, r.video_id) for r in test] == [
        (0, f"v_ApplyEyeMakeup_g{g_test:02d}_c01"), (0, f"v_ApplyEyeMakeup_g{g_test:02d}_c02"),
        (1, f"v_ApplyLipstick_g{g_test:02d}_c01"), (1, f"v_ApplyLipstick_g{g_test:02d}_c02")]
    assert made.notes == {"split_id": split_id}


def test_ucf101_trainlist_label_must_match_its_folder(tmp_path):
    write_ucf101(tmp_path)
    (tmp_path / "ucfTrainTestlist" / "trainlist01.txt").write_text("ApplyLipstick/v_ApplyLipstick_g08_c01.avi 1\n")
    with pytest.raises(ConfigError, match="has label '1' but its folder is class 2"):
        make_list("ucf101", str(tmp_path / "ucfTrainTestlist"), ROOT)


@pytest.mark.parametrize("split_id", [1, 2, 3])
def test_hmdb51_per_class_split_files(tmp_path, split_id):
    made = make_list("hmdb51", str(write_hmdb51(tmp_path)), ROOT, split_id=split_id)
    assert made.classes == HMDB_CLASSES
    # line n of a class's file has id (n + split_id) % 3: 1 = train, 2 = test, 0 = unused
    n_train, n_test = (1 - split_id) % 3, (2 - split_id) % 3
    for label, c in enumerate(HMDB_CLASSES):
        mine = {r.split: r for r in made.rows if r.label == label}
        assert sorted(mine) == ["test", "train"]
        assert mine["train"].uri == f"{ROOT}/{c}/{c}_video_{n_train}_u_cm_np1_fr_goo_0.avi"
        assert mine["test"].video_id == f"{c}_video_{n_test}_u_cm_np1_fr_goo_0"


def test_split_id_only_where_the_dataset_has_splits(tmp_path):
    with pytest.raises(ConfigError, match="--split-id is for ucf101 and hmdb51"):
        make_list("ssv2", str(write_ssv2(tmp_path)), ROOT, split_id=2)
    with pytest.raises(ConfigError, match="not one of"):
        make_list("ucf101", str(write_ucf101(tmp_path)), ROOT, split_id=4)


@pytest.mark.parametrize("prefix", ["", "kinetics_400_"])
def test_kinetics400_clips_folder(tmp_path, prefix):
    made = make_list("kinetics400", str(write_kinetics400(tmp_path, prefix=prefix)), ROOT)
    assert made.classes == ["abseiling", "air drumming", "zumba"]  # sorted names
    assert _table(made)[:2] == [(f"{ROOT}/--07WQ2iBlw_000001_000011.mp4", 0, "train", "07WQ2iBlw_000001_000011"),
                                (f"{ROOT}/--33Lscn6sk_000004_000014.mp4", 1, "train", "33Lscn6sk_000004_000014")]
    assert [r.split for r in made.rows] == ["train", "train", "train", "val", "val"]
    assert all(r.start is None and r.end is None for r in made.rows)


def test_kinetics400_whole_videos_become_segments(tmp_path):
    made = make_list("kinetics400", str(write_kinetics400(tmp_path)), ROOT, uri_template="{label_dir}/{youtube_id}.mp4")
    val = [r for r in made.rows if r.split == "val"]
    assert [(r.uri, r.video_id, r.start, r.end, r.label) for r in val] == [
        (f"{ROOT}/abseiling/-3B32lodo2M.mp4", "3B32lodo2M_000059_000069", 59.0, 69.0, 0),
        (f"{ROOT}/zumba/-3B32lodo2M.mp4", "3B32lodo2M_000100_000110", 100.0, 110.0, 2)]
    assert made.notes["segments_of_whole_videos"] is True
    with pytest.raises(ConfigError, match=r"uses \['ytid'\]; the fields are"):
        make_list("kinetics400", str(tmp_path), ROOT, uri_template="{ytid}.mp4")
    with pytest.raises(ConfigError, match="cannot format .*train.csv, row 1: .*time_start/time_end the CSV's text"):
        make_list("kinetics400", str(tmp_path), ROOT, uri_template="{youtube_id}_{time_start:06d}.mp4")


def test_missing_files_name_what_to_pass(tmp_path):
    for name in DATASETS:
        with pytest.raises(ConfigError, match="annotation files|pass the folder"):
            make_list(name, str(tmp_path), ROOT)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_written_list_reads_back_with_its_classes(tmp_path, suffix):
    made = make_list("kinetics400", str(write_kinetics400(tmp_path / "k400")), ROOT, uri_template="{youtube_id}.mp4",
                     splits=["val"])
    out = str(tmp_path / f"k400_val{suffix}")
    classes = write_video_list(made, out)
    assert classes == str(tmp_path / "k400_val.classes.json")
    entries, names = read_video_list(out, class_index=classes)
    assert names == made.classes
    assert [(e.uri, e.label, e.split, e.video_id, e.start, e.end) for e in entries] == [
        (r.uri, r.label, r.split, r.video_id, r.start, r.end) for r in made.rows]
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        write_video_list(made, out)
