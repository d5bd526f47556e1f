"""Evaluation: the per-video average of per-clip softmax over views x clips against a hand
computation, metrics from the same probabilities, the output files; the prediction routine's
exactly-once rule."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from tests.finetune.helpers import FRAMES, VIEWS, time_order_rows
from vimpac_core.model import VimpacConfig, VimpacForClassification
from vimpac_core.shards.synthetic import write_token_shards
from vimpac_core.train.distributed import DistEnv
from vimpac_core.train.evaluate import evaluate
from vimpac_core.train.finetune_config import EvaluateConfig
from vimpac_core.train.metrics import classification_metrics
from vimpac_core.train.predict import collect

CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
CLIP_LEN, RATE = 2, 1


@pytest.fixture()
def setup(tmp_path):
    rows = time_order_rows(3, seed=4, prefix="e", views=VIEWS)
    # Longer videos for some: 4 frames, a clip of 2 every 1 -> delta 2 (starts 0, 1, 2 for 3 clips).
    write_token_shards(str(tmp_path / "d"), rows, rows_per_shard=5)
    torch.manual_seed(0)
    model = VimpacForClassification(VimpacConfig(layers=1, hid_dim=128, vocab_size=64, frame_size=32, clip_len=CLIP_LEN,
                                                 num_labels=3, dropout=0.0))
    with torch.no_grad():
        model.cls_fc.weight.normal_(0, 0.5)  # a non-zero classifier, so predictions differ
    folder = model.save_pretrained(tmp_path / "model")
    return tmp_path, rows, model.eval(), folder


def _by_hand(model, rows, views, clips):
    """Per video: for each view and k < clips, start = int(delta * k / max(clips - 1, 1)) with
    delta = frames - ((clip_len - 1) * rate + 1); softmax per clip; mean over all of them."""
    grids = {}
    for r in rows:
        grids.setdefault(r["video_id"], {})[r["view"]] = (np.array(r["tokens"]).reshape(FRAMES, 4, 4), r["label"])
    out = {}
    for vid, by_view in grids.items():
        probs = []
        for view in views:
            grid, label = by_view[view]
            delta = max(FRAMES - ((CLIP_LEN - 1) * RATE + 1), 0)
            for k in range(clips):
                start = int(delta * k / max(clips - 1, 1))
                clip = torch.from_numpy(grid[start : start + CLIP_LEN * RATE : RATE].astype(np.int64))[None]
                with torch.no_grad():
                    probs.append(model(clip).logits.softmax(-1)[0])
        out[vid] = (torch.stack(probs).mean(0), label)
    return out


def test_averaged_probabilities_and_metrics_match_a_hand_computation(setup):
    root, rows, model, folder = setup
    config = EvaluateConfig(checkpoint=str(folder), data=str(root / "d"), views=list(VIEWS), output=str(root / "eval"),
                            num_test_clips=[3, 1], frame_rate=RATE, bs_per_gpu=2, num_workers=0, device="cpu")
    summary = evaluate(config, CPU)
    for clips in (3, 1):
        hand = _by_hand(model, rows, VIEWS, clips)
        table = pq.read_table(root / "eval" / f"clips{clips}" / "predictions.parquet").to_pylist()
        assert sorted(r["video_id"] for r in table) == sorted(hand)
        for r in table:
            expected, label = hand[r["video_id"]]
            assert r["label"] == label
            np.testing.assert_allclose(r["probabilities"], expected.numpy(), rtol=1e-5, atol=1e-6)
            assert r["prediction"] == int(expected.argmax()) and r["top5"] == expected.argsort(descending=True).tolist()
        probs = torch.stack([hand[v][0] for v in sorted(hand)])
        labels = torch.tensor([hand[v][1] for v in sorted(hand)])
        top1 = float((probs.argmax(1) == labels).float().mean())
        per_class = [float((probs.argmax(1)[labels == c] == c).float().mean()) for c in (0, 1)]
        metrics = json.loads((root / "eval" / f"clips{clips}" / "metrics.json").read_text())
        assert metrics["top1"] == pytest.approx(top1) and metrics["top5"] == 1.0  # 3 classes: top-5 holds all
        assert metrics["mean_class_accuracy"] == pytest.approx(np.mean(per_class))
        assert metrics["videos"] == 6 and metrics["views"] == 2 and metrics["num_test_clips"] == clips
        assert summary["clips"][str(clips)]["top1"] == pytest.approx(top1)
        image = Image.open(root / "eval" / f"clips{clips}" / "confusion.png")
        assert image.format == "PNG" and image.size[0] > 3
    assert summary["top1"] == summary["clips"]["3"]["top1"]  # the first count is the headline


def test_a_video_without_every_test_view_is_left_out_and_counted(setup):
    root, rows, _, folder = setup
    partial = [r for r in rows if not (r["video_id"] == "e0000-0" and r["view"] == VIEWS[1])]
    write_token_shards(str(root / "p"), partial, rows_per_shard=5)
    config = EvaluateConfig(checkpoint=str(folder), data=str(root / "p"), views=list(VIEWS), output=str(root / "ev2"),
                            num_test_clips=[1], frame_rate=RATE, bs_per_gpu=2, num_workers=0, device="cpu")
    metrics = evaluate(config, CPU)["clips"]["1"]
    assert metrics["videos"] == 5 and metrics["left_out"] == 1


def test_metrics_top5_and_mean_class_from_the_same_probabilities():
    probs = torch.tensor([[0.5, 0.3, 0.2, 0, 0, 0, 0], [0.1, 0.2, 0.7, 0, 0, 0, 0],
                          [0.0, 0.05, 0.1, 0.15, 0.2, 0.22, 0.28], [0.6, 0.4, 0, 0, 0, 0, 0]])
    labels = torch.tensor([0, 1, 0, -1])  # video 2's class is 7th of 7; the last video is unlabelled
    m = classification_metrics(probs, labels)
    assert m["top1"] == pytest.approx(1 / 3) and m["top5"] == pytest.approx(2 / 3) and m["videos"] == 3
    assert m["mean_class_accuracy"] == pytest.approx((1 / 2 + 0) / 2)


def test_collect_keeps_each_video_once_and_refuses_gaps_or_disagreement():
    a = (torch.tensor([0, 2, 4]), torch.tensor([1, 1, 1]), torch.tensor([[0.0], [2.0], [4.0]]))
    b = (torch.tensor([1, 3, 0]), torch.tensor([1, 1, 1]), torch.tensor([[1.0], [3.0], [0.0]]))  # 0 again: padding
    pos, _, out = collect([a, b], 5)
    assert pos.tolist() == [0, 1, 2, 3, 4] and out[:, 0].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="1 of 6 videos missing"):
        collect([a, b], 6)
    bad = (torch.tensor([1, 3, 0]), torch.tensor([1, 1, 1]), torch.tensor([[1.0], [3.0], [9.0]]))
    with pytest.raises(RuntimeError, match="two different results"):
        collect([a, bad], 5)
