"""Report pictures: training curves from real TensorBoard event files, and the mask-then-predict
picture built with a real (untrained) VQ-VAE decoder."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vimpac_core.pictures import (
    CHART_H,
    CHART_W,
    COLOURS,
    masked_prediction_rows,
    read_scalars,
    training_curves,
)
from vimpac_core.tokenizers.runtime import VQVAETokenizer
from vimpac_core.tokenizers.vqvae import VQVAE, VQVAEConfig


def _write_run(folder, losses):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    for step, loss in enumerate(losses):
        writer.add_scalar("train/loss", loss, step)
    writer.close()


def test_training_curves_draw_every_run_of_a_tag(tmp_path):
    _write_run(tmp_path / "a", [3.0, 2.0, 1.5, 1.0])
    _write_run(tmp_path / "b", [3.0, 2.8, 2.7])
    assert read_scalars(tmp_path / "a")["train/loss"] == [(0, 3.0), (1, 2.0), (2, 1.5), (3, 1.0)]
    out = training_curves({"pre-trained": tmp_path / "a", "scratch": tmp_path / "b"}, tmp_path / "c.png",
                          ("train/loss", "val/top1"))
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (CHART_H, CHART_W, 3)  # one tag logged: one chart
    for colour in COLOURS[:2]:  # one line per run
        assert (image == colour).all(axis=2).sum() > 20
    assert training_curves({"x": tmp_path / "a"}, tmp_path / "d.png", ("val/top1",)) is None


def test_masked_prediction_rows_grey_the_mask_and_show_predictions():
    torch.manual_seed(0)
    tok = VQVAETokenizer(VQVAE(VQVAEConfig(codebook_size=16, embed_dim=8, channels=(8, 8, 8), num_res_blocks=0)), "0" * 64)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (3, 2, 2))
    codes[2] = 17  # a PAD frame (vocab + 1)
    masked = np.zeros(codes.shape, dtype=bool)
    masked[1, 0, 0] = True
    picture = masked_prediction_rows(tok, codes, masked, codes)  # a perfect prediction
    frame_h = 16
    rows = [picture[i * (frame_h + 2): i * (frame_h + 2) + frame_h] for i in range(3)]
    assert picture.shape[0] == 3 * frame_h + 4
    assert np.array_equal(rows[0], rows[2])  # predicted == original tokens: same pixels
    differs = (rows[0] != rows[1]).any(axis=2)
    col = frame_h + 2  # frame 1 starts after frame 0 and its 2-pixel gap
    assert differs[:8, col:col + 8].all() and differs.sum() == 64  # exactly the masked 8x8 block
    assert (rows[0][:, 2 * col: 2 * col + frame_h] == 0).all()  # the PAD frame is black
    wrong = masked_prediction_rows(tok, codes, masked, (codes + 1) % 16)
    assert not np.array_equal(wrong[-frame_h:], rows[2])
