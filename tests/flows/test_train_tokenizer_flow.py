"""The train-tokenizer stage end to end: `vimpac train-tokenizer` runs the flow on the session's
Prefect server over real clips, then resumes from its checkpoint."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter

from vimpac_cli import main as cli_main
from vimpac_core.tokenizers import load_tokenizer
from vimpac_core.video import shutdown_workers, write_synthetic_video


@pytest.fixture(scope="module", autouse=True)
def _stop_decoders():
    yield
    shutdown_workers()


@pytest.mark.slow
def test_train_tokenizer_cli_runs_the_flow_and_resumes(prefect_server, sample_videos, tmp_path, capsys):
    gen = write_synthetic_video(tmp_path / "clips" / "gen.mp4", num_frames=40, fps=10, width=128, height=96)
    rows = [{"uri": str(p)} for p in sample_videos.values()] + [{"uri": "clips/gen.mp4"}, {"uri": "clips/missing.mp4"}]
    video_list = tmp_path / "videos.csv"
    with open(video_list, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["uri"])
        writer.writeheader()
        writer.writerows(rows)
    assert gen.is_file()
    out = tmp_path / "out"
    common = ["train-tokenizer", str(video_list), "--out", str(out), "--frame-size", "32", "--codebook-size", "64",
              "--channels", "32", "64", "64", "--embed-dim", "32", "--num-res-blocks", "1", "--fps", "4",
              "--frames-per-video", "30", "--batch-size", "32", "--checkpoint-every", "50", "--log-every", "50"]
    assert cli_main([*common, "--steps", "200"]) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert first["final_train"]["step"] == 200
    assert first["psnr_gain_db"] >= 3.0 and first["codebook_usage"] >= 0.5, first
    assert (out / "reconstructions.png").is_file() and (out / "checkpoint" / "trainer.safetensors").is_file()
    with np.load(out / "frames.npz", allow_pickle=False) as frames:  # tasks hand over a path, not arrays
        assert frames["train"].shape[1:] == (32, 32, 3) and len(frames["held_out"]) == first["held_out_frames"]
    tok = load_tokenizer(f"vqvae:{out / 'tokenizer'}")
    assert tok.tokenizer_id == first["tokenizer_id"]

    state = (out / "checkpoint" / "trainer.safetensors").read_bytes()
    assert cli_main([*common, "--steps", "250"]) == 2  # no --resume: refused once, never retried into a resume
    assert "pass --resume" in capsys.readouterr().err
    assert (out / "checkpoint" / "trainer.safetensors").read_bytes() == state

    assert cli_main([*common, "--steps", "250", "--resume"]) == 0
    second = json.loads((out / "metrics.json").read_text())
    assert second["final_train"]["step"] == 250 and second["tokenizer_id"] != first["tokenizer_id"]
    printed = capsys.readouterr().out
    assert '"psnr_db"' in printed

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter())
        names = {client.read_flow(r.flow_id).name for r in runs if r.state and r.state.is_completed()}
    assert "train-tokenizer" in names
