"""`vimpac make-list` as a subprocess: its list is one `vimpac ingest` accepts (real clips, real
Prefect server, tiny VQ-VAE), Kinetics segments come out inside their windows."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.flows.test_ingest_cli import vimpac
from tests.ingest.conftest import tiny_tokenizer  # noqa: F401 - pytest fixture
from vimpac_cli import main
from vimpac_core.video import write_synthetic_video

from .formats import UCF_CLASSES, write_kinetics400, write_ucf101

# Two whole "youtube" videos of 3 s; three segments in train, one in val.
ROWS = [("air drumming", "yt_a", 0, 1, "train"), ("abseiling", "yt_a", 1.5, 3, "train"),
        ("abseiling", "yt_b", 0.5, 2, "train"), ("air drumming", "yt_b", 2, 3, "val")]


@pytest.mark.slow
def test_kinetics_segments_list_is_ingested(prefect_server, tmp_path, tiny_tokenizer):  # noqa: F811
    videos = tmp_path / "videos"
    for i, ytid in enumerate(("yt_a", "yt_b")):
        write_synthetic_video(videos / f"{ytid}.mp4", num_frames=30, fps=10, width=48, height=32, seed=i)
    anno = write_kinetics400(tmp_path / "k400", rows=ROWS)
    out_list = tmp_path / "lists" / "k400_train.csv"
    made = vimpac("make-list", "kinetics400", str(anno), "--videos-root", str(videos), "--out", str(out_list),
                  "--uri-template", "{youtube_id}.mp4", "--split", "train")
    summary = json.loads(made.stdout)
    assert summary == {"dataset": "kinetics400", "out": str(out_list), "videos": 3, "splits": {"train": 3},
                       "classes": 2, "segments": 3, "segments_of_whole_videos": True,
                       "uri_template": "{youtube_id}.mp4", "missing_local_videos": 0,
                       "classes_file": str(tmp_path / "lists" / "k400_train.classes.json")}
    out = tmp_path / "tokens"
    proc = vimpac("ingest", str(out_list), "--out", str(out), "--tokenizer", tiny_tokenizer, "--class-index",
                  summary["classes_file"], "--fps", "4", "--frame-size", "32", "--batch-size", "8")
    assert json.loads(proc.stdout.strip().splitlines()[-1])["ok"] == 3
    assert json.loads((out / "classes.json").read_text())["classes"] == ["abseiling", "air drumming"]
    table = pq.read_table(out / "shards").to_pylist()
    windows = {f"{yt}_{int(s):06d}_{int(e):06d}": (s, e, label) for label, yt, s, e, split in ROWS if split == "train"}
    assert sorted(r["video_id"] for r in table) == sorted(windows)
    for rec in table:
        start, end, label = windows[rec["video_id"]]
        assert all(start <= t < end for t in rec["timestamps"]) and rec["num_frames"] == round((end - start) * 4)
        assert rec["label"] == ["abseiling", "air drumming"].index(label) and rec["split"] == "train"


def test_ucf101_list_and_its_refusals(tmp_path, capsys):
    """In-process (`vimpac_cli.main`): the same parser and error handling, without a subprocess."""
    anno = write_ucf101(tmp_path / "anno")
    out = tmp_path / "ucf101_s2.csv"
    args = ["make-list", "ucf101", str(anno), "--videos-root", str(tmp_path / "UCF-101"), "--out", str(out),
            "--split-id", "2"]
    assert main(args) == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out)
    assert (summary["videos"], summary["splits"], summary["split_id"], summary["missing_local_videos"]) == (
        9, {"test": 4, "train": 5}, 2, 9)
    assert "9 video(s) not found under" in printed.err
    lines = out.read_text().splitlines()
    assert lines[0] == "uri,label,split,video_id"
    assert lines[1] == f"{tmp_path}/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi,0,train,v_ApplyEyeMakeup_g01_c01"
    assert json.loads((tmp_path / "ucf101_s2.classes.json").read_text())["classes"] == UCF_CLASSES
    assert main(args) == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    wrong = ["make-list", "ssv2", str(anno), "--videos-root", "v", "--out", str(tmp_path / "s.csv"), "--split-id", "1"]
    assert main(wrong) == 2 and "--split-id is for ucf101 and hmdb51" in capsys.readouterr().err
