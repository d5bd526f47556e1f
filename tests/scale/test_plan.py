"""Capacity plan: the arithmetic against a hand computation, the CLI on given rates, and a real calibration."""

from __future__ import annotations

import json

import pytest
import yaml

from vimpac_cli import main
from vimpac_core.errors import ConfigError
from vimpac_core.plan import Cluster, Rates, TrainStage, Workload, estimate, format_plan
from vimpac_core.plan.calibrate import count_parameters

RATES = dict(source="hand", download_MBps_per_node=100, video_kbps=800, decode_frames_per_s=50,
             tokenize_frames_per_s={128: 400}, train_tokens_per_s={"stage1": 10_000}, zstd_ratio=1.25,
             scaling_efficiency=0.8)


def test_plan_arithmetic_matches_a_hand_computation():
    work = Workload(videos=1000, mean_duration_s=60, fps=2, views=1)
    cluster = Cluster(nodes=2, gpus_per_node=4, decode_workers_per_node=8)
    stage = TrainStage("stage1", frame_size=128, clip_len=5, epochs=10, videos=1000, params=1_000_000)
    plan = estimate(work, cluster, Rates(**RATES), [stage])
    rows = {s.stage: s for s in plan.stages}
    assert list(rows) == ["download", "decode+tokenize 128px", "stage1"]
    # download: 1000 x 60 s x 800 kbit/s = 6e9 bytes over 2 nodes x 100 MB/s = 30 s
    assert rows["download"].storage_bytes == pytest.approx(6e9)
    assert rows["download"].wall_s == pytest.approx(30.0)
    assert rows["download"].gpu_hours == 0
    # 120,000 frames; decode over 2 x 8 workers at 50 frames/s = 150 s; tokenize over 8 GPUs x 400 x 0.8 = 58.6 s
    ingest = rows["decode+tokenize 128px"]
    assert ingest.wall_s == pytest.approx(150.0)
    assert ingest.note.startswith("decode-bound")
    assert ingest.gpu_hours == pytest.approx(150 * 8 / 3600)
    assert ingest.storage_bytes == pytest.approx(2 * 120_000 * 16 * 16 / 1.25)  # uint16 x frames x 16x16 / ratio
    # 10 epochs x 1000 videos x 2 clips x 5 frames x 256 tokens = 25.6M tokens over 8 x 10k x 0.8 = 400 s
    train = rows["stage1"]
    assert train.wall_s == pytest.approx(400.0)
    assert train.gpu_hours == pytest.approx(400 * 8 / 3600)
    assert train.storage_bytes == pytest.approx(3 * 1_000_000 * 12)  # 2 kept + final, weights + 2 Adam moments
    assert plan.wall_s == pytest.approx(580.0)
    assert plan.bottleneck.stage == "stage1"
    table = format_plan(plan, cluster)
    assert "bottleneck: stage1 (69% of the wall time)" in table


def test_tokenize_bound_ingest_and_a_missing_rate():
    work = Workload(videos=1000, mean_duration_s=60, fps=2, views=3)
    rates = Rates(**{**RATES, "decode_frames_per_s": 1000})
    plan = estimate(work, Cluster(1, 1, 8), rates, [TrainStage("stage1", 128, 5, 1, 1000, 10)])
    ingest = plan.stages[1]
    assert ingest.wall_s == pytest.approx(120_000 * 3 / (400 * 0.8))
    assert ingest.note.startswith("tokenize-bound")
    with pytest.raises(ConfigError, match=r"tokenize_frames_per_s: no rate for frame size 256"):
        estimate(work, Cluster(), rates, [TrainStage("stage1", 256, 5, 1, 1000, 10)])


def test_parameter_count_is_the_real_models():
    from vimpac_core.model import VimpacConfig, VimpacForPreTraining

    config = VimpacConfig(layers=1, hid_dim=128, frame_size=32, clip_len=2, nce_proj_hid_dim=64)
    assert count_parameters(config) == sum(p.numel() for p in VimpacForPreTraining(config).parameters())


def test_cli_plan_from_a_rates_file(tmp_path, capsys):
    rates = {**RATES, "tokenize_frames_per_s": {32: 400, 64: 100},
             "train_tokens_per_s": {"stage1": 1000, "stage2": 500, "finetune": 800}}
    path = tmp_path / "rates.yaml"
    path.write_text(yaml.safe_dump(rates))
    code = main(["plan", "configs/pretrain/tiny.yaml", "--videos", "100", "--mean-duration", "30", "--nodes", "2",
                 "--gpus-per-node", "2", "--rates", str(path), "--finetune-videos", "50"])
    out = capsys.readouterr().out
    assert code == 0
    for stage in ("download", "decode+tokenize 32px", "decode+tokenize 64px", "stage1", "stage2", "finetune", "total"):
        assert f"\n{stage} " in out
    # finetune: 50 epochs x 50 videos x 1 clip x 2 frames x 64 tokens = 320,000 over 4 x 800 x 0.8 = 125 s
    assert "bottleneck: finetune" in out


def test_cli_plan_needs_rates(capsys):
    assert main(["plan", "configs/pretrain/tiny.yaml", "--videos", "10", "--mean-duration", "5"]) == 2
    assert "give --rates FILE" in capsys.readouterr().err


def test_calibration_measures_real_rates(tmp_path, capsys):
    from tests.ingest.conftest import make_vqvae

    spec = make_vqvae(tmp_path / "tok")
    saved = tmp_path / "measured.yaml"
    code = main(["plan", "configs/pretrain/tiny.yaml", "--videos", "100", "--mean-duration", "30", "--calibrate",
                 "--tokenizer", spec, "--calibration-steps", "1", "--save-rates", str(saved)])
    assert code == 0
    rates = Rates.model_validate(yaml.safe_load(saved.read_text()))
    assert rates.source.startswith("measured on this machine")
    assert set(rates.tokenize_frames_per_s) == {32, 64} and set(rates.train_tokens_per_s) == {"stage1", "stage2"}
    assert rates.decode_frames_per_s > 0 and rates.zstd_ratio > 0
    assert min(rates.train_tokens_per_s.values()) > 0
    assert "bottleneck: " in capsys.readouterr().out


def test_workload_of_a_video_list_probes_its_videos(tmp_path, capsys):
    from tests.ingest.conftest import make_clips, write_csv
    from vimpac_core.plan.calibrate import workload_from_list

    clips = make_clips(tmp_path / "clips", 3)  # 10 frames at 10 fps: 1 s each
    lst = write_csv(tmp_path / "l.csv", [{"uri": str(c)} for c in clips])
    work = workload_from_list(str(lst), fps=2, views=1)
    assert work.videos == 3 and work.mean_duration_s == pytest.approx(1.0, abs=0.05)
    path = tmp_path / "rates.yaml"
    path.write_text(yaml.safe_dump({**RATES, "tokenize_frames_per_s": {32: 400, 64: 100},
                                    "train_tokens_per_s": {"stage1": 1000, "stage2": 500}}))
    assert main(["plan", "configs/pretrain/tiny.yaml", "--list", str(lst), "--rates", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("videos: 3 x 1 s at 2 fps")
    plan = json.loads(out.split("\n", 1)[1])
    assert [s["stage"] for s in plan["stages"]][-2:] == ["stage1", "stage2"]
    remote = write_csv(tmp_path / "r.csv", [{"uri": "http://example.com/a.mp4"}])
    with pytest.raises(ConfigError, match="is not a local file"):
        workload_from_list(str(remote), fps=2, views=1)
