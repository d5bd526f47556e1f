"""Video lists in every format, label indexing (numeric labels, a shared class index), safe video ids."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vimpac_core.config import IngestConfig
from vimpac_core.errors import ConfigError
from vimpac_core.inputs import read_video_list, safe_video_id

from .conftest import write_csv

ROWS = [
    {"uri": "videos/b/run.mp4", "label": "Run", "split": "train"},
    {"uri": "videos/a/jump.mp4", "label": "Jump", "split": "train"},
    {"uri": "/abs/walk.avi", "label": "Walk", "split": "val"},
]


def _write(tmp_path, fmt: str):
    if fmt == "csv":
        return write_csv(tmp_path / "list.csv", ROWS)
    if fmt == "jsonl":
        path = tmp_path / "list.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
        return path
    path = tmp_path / "list.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_formats_give_the_same_entries(tmp_path, fmt):
    entries, classes = read_video_list(str(_write(tmp_path, fmt)))
    assert classes == ["Jump", "Run", "Walk"]  # sorted names: stable index
    assert [e.label for e in entries] == [1, 0, 2]
    assert [e.video_id for e in entries] == ["run", "jump", "walk"]
    assert entries[0].uri == f"{tmp_path}/videos/b/run.mp4"  # relative -> list folder
    assert entries[2].uri == "/abs/walk.avi"
    assert [e.split for e in entries] == ["train", "train", "val"]


def test_mmaction2_txt_resolves_against_root_with_int_labels(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a/x.mp4 3\nb/y.mp4 0\n\n")
    entries, classes = read_video_list(str(path), root="s3://bucket/ucf")
    assert [e.uri for e in entries] == ["s3://bucket/ucf/a/x.mp4", "s3://bucket/ucf/b/y.mp4"]
    assert [e.label for e in entries] == [3, 0]
    assert classes == ["0", "1", "2", "3"]


def test_same_file_name_in_two_folders_gets_two_ids(tmp_path):
    path = write_csv(tmp_path / "l.csv", [{"uri": "a/clip.mp4"}, {"uri": "b/clip.mp4"}])
    entries, classes = read_video_list(str(path))
    ids = [e.video_id for e in entries]
    assert len(set(ids)) == 2 and all(i.startswith("clip-") for i in ids)
    assert classes == [] and entries[0].label is None


def test_duplicate_explicit_ids_are_refused(tmp_path):
    path = write_csv(tmp_path / "l.csv", [{"uri": "a.mp4", "video_id": "v"}, {"uri": "b.mp4", "video_id": "v"}])
    with pytest.raises(ConfigError, match="duplicate video ids"):
        read_video_list(str(path))


@pytest.mark.parametrize("text", ["../../etc/passwd", "/abs/x", "..", "", "a b/c\\d", "x" * 500, ".hidden"])
def test_safe_video_id_never_escapes(text):
    vid = safe_video_id(text)
    assert vid and "/" not in vid and "\\" not in vid and not vid.startswith(".")
    assert len(vid) <= 120
    assert vid not in (".", "..")


def test_missing_uri_and_unknown_format_are_clear(tmp_path):
    path = write_csv(tmp_path / "l.csv", [{"path": "a.mp4"}])
    with pytest.raises(ConfigError, match="needs a 'uri'"):
        read_video_list(str(path))
    with pytest.raises(ConfigError, match="format"):
        read_video_list(str(tmp_path / "list.xyz"))
    with pytest.raises(ConfigError, match="does not exist"):
        read_video_list(str(tmp_path / "nope.csv"))


def test_config_validates_frame_size_and_tokenizer():
    with pytest.raises(ValueError, match="multiple of 8"):
        IngestConfig(inputs="l.csv", out="o", tokenizer="vqvae:t", frame_size=100)
    with pytest.raises(ValueError, match="KIND:PATH"):
        IngestConfig(inputs="l.csv", out="o", tokenizer="bogus")


def test_relative_list_and_root_resolve_to_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "l.csv", [{"uri": "clips/a.mp4"}])
    (entry,), _ = read_video_list("l.csv")
    assert entry.uri == f"{tmp_path}/clips/a.mp4"
    (entry,), _ = read_video_list("l.csv", root="videos")
    assert entry.uri == f"{tmp_path}/videos/clips/a.mp4"


def _float_labels_parquet(tmp_path, labels):
    """A Parquet list as pandas writes a label column with gaps: float64, NaN where missing."""
    path = tmp_path / "list.parquet"
    table = pa.table({"uri": [f"v{i}.mp4" for i in range(len(labels))], "label": pa.array(labels, pa.float64())})
    pq.write_table(table, path)
    return path


def test_integral_float_labels_are_class_indices_and_nan_is_unlabelled(tmp_path):
    path = _float_labels_parquet(tmp_path, [2.0, 10.0, float("nan"), None, 0.0])
    entries, classes = read_video_list(str(path))
    assert [e.label for e in entries] == [2, 10, None, None, 0]
    assert classes == [str(i) for i in range(11)]  # indices, not names sorted as text
    csv_path = write_csv(tmp_path / "l.csv", [{"uri": "a.mp4", "label": "2.0"}, {"uri": "b.mp4", "label": ""},
                                              {"uri": "c.mp4", "label": "10.0"}])
    assert [e.label for e in read_video_list(str(csv_path))[0]] == [2, None, 10]


@pytest.mark.parametrize("bad", [-1, 2.5])
def test_negative_or_fractional_labels_name_the_row_and_file(tmp_path, bad):
    path = tmp_path / "l.jsonl"
    path.write_text("\n".join(json.dumps({"uri": f"v{i}.mp4", "label": x}) for i, x in enumerate([0, 1, bad])))
    with pytest.raises(ConfigError, match=rf"l\.jsonl'?, row 3: label {bad}"):
        read_video_list(str(path))
    csv_path = write_csv(tmp_path / "l.csv", [{"uri": "a.mp4", "label": str(bad)}])
    with pytest.raises(ConfigError, match="row 1"):
        read_video_list(str(csv_path))


def test_a_val_list_uses_the_train_class_index(tmp_path):
    train = write_csv(tmp_path / "train.csv", [{"uri": "a.mp4", "label": "Walk"}, {"uri": "b.mp4", "label": "Jump"},
                                                {"uri": "c.mp4", "label": "Run"}])
    _, classes = read_video_list(str(train))
    out = tmp_path / "train_out"
    out.mkdir()
    (out / "classes.json").write_text(json.dumps({"classes": classes}))  # as prepare_output writes it
    val = write_csv(tmp_path / "val.csv", [{"uri": "d.mp4", "label": "Walk"}, {"uri": "e.mp4", "label": "Run"}])
    alone = read_video_list(str(val))
    assert alone[1] == ["Run", "Walk"] and [e.label for e in alone[0]] == [1, 0]  # its own index differs
    for index in (str(out / "classes.json"), str(out), classes):
        entries, val_classes = read_video_list(str(val), class_index=index)
        assert val_classes == ["Jump", "Run", "Walk"] and [e.label for e in entries] == [2, 1]


def test_names_missing_from_the_class_index_are_named(tmp_path):
    val = write_csv(tmp_path / "val.csv", [{"uri": "d.mp4", "label": "Swim"}, {"uri": "e.mp4", "label": "Run"},
                                            {"uri": "f.mp4", "label": "Fly"}])
    with pytest.raises(ConfigError, match=r"not in the class index: \['Fly', 'Swim'\]"):
        read_video_list(str(val), class_index=["Jump", "Run"])
    ints = write_csv(tmp_path / "ints.csv", [{"uri": "d.mp4", "label": "0"}, {"uri": "e.mp4", "label": "2"}])
    with pytest.raises(ConfigError, match="row 2: label 2 is out of range"):
        read_video_list(str(ints), class_index=["Jump", "Run"])
    with pytest.raises(ConfigError, match="does not exist"):
        read_video_list(str(val), class_index=str(tmp_path / "nowhere"))
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="is not a classes.json"):
        read_video_list(str(val), class_index=str(tmp_path / "bad.json"))
