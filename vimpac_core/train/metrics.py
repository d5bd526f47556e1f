"""Classification metrics from averaged probabilities, and the files an evaluation leaves behind.

Top-1 is the release's figure (argmax of the per-video mean of per-clip softmax); top-5 and the
mean per-class accuracy are our additions, computed from the same probabilities. Only labelled
videos count. Outputs: ``predictions.parquet`` (video_id, label, prediction, top5, probabilities,
loss), ``metrics.json`` and ``confusion.png`` (rows: true class, columns: predicted, shade: share
of the row), drawn with pillow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image, ImageDraw

from vimpac_core.pictures import save_png
from vimpac_core.storage import atomic_write_bytes


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> dict:
    """probs [V, C] (rows sum to 1), labels [V] (-1: unlabelled, skipped) -> top1, top5,
    mean_class_accuracy (over classes present in labels), videos."""
    keep = labels >= 0
    probs, labels = probs[keep].float(), labels[keep].long()
    classes = num_classes or probs.shape[1]
    if len(labels) == 0:
        return {"top1": 0.0, "top5": 0.0, "mean_class_accuracy": 0.0, "videos": 0, "num_classes": classes}
    k = min(5, probs.shape[1])
    ranked = probs.topk(k, dim=1).indices
    correct1 = ranked[:, 0] == labels
    correct5 = (ranked == labels[:, None]).any(1)
    per_class = [float(correct1[labels == c].float().mean()) for c in labels.unique().tolist()]
    return {
        "top1": float(correct1.float().mean()),
        "top5": float(correct5.float().mean()),
        "mean_class_accuracy": float(np.mean(per_class)),
        "videos": int(len(labels)),
        "num_classes": int(classes),
    }


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """[C, C] counts: row = true class, column = predicted class (labelled videos only)."""
    keep = labels >= 0
    flat = labels[keep].long() * num_classes + predictions[keep].long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy()


def draw_confusion(matrix: np.ndarray, path: str | Path, title: str = "") -> Path:
    """A PNG of ``matrix`` normalised per row (white 0 -> dark blue 1, square-root scale), square cells."""
    c = matrix.shape[0]
    cell = max(2, min(120, 720 // max(c, 1)))
    margin, top = 8, 40
    side = c * cell
    image = Image.new("RGB", (max(side + 2 * margin, 300), side + top + margin), "white")
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    draw = ImageDraw.Draw(image)
    draw.text((margin, 6), title, fill="black")
    draw.text((margin, 22), "rows: true class, columns: predicted", fill="gray")
    for i in range(c):
        for j in range(c):
            v = float(share[i, j]) ** 0.5  # square root: small shares stay visible among many classes
            if v > 0:
                color = (int(255 * (1 - v)), int(255 * (1 - 0.8 * v)), 255 - int(100 * v))
                x, y = margin + j * cell, top + i * cell
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=color)
    draw.rectangle([margin - 1, top - 1, margin + side, top + side], outline="gray")
    return save_png(image, path)


def predictions_table(video_ids: list[str], labels: torch.Tensor, probs: torch.Tensor, loss: torch.Tensor) -> pa.Table:
    k = min(5, probs.shape[1])
    top = probs.topk(k, dim=1).indices
    return pa.table({
        "video_id": pa.array(video_ids, pa.string()),
        "label": pa.array(labels.tolist(), pa.int32()),
        "prediction": pa.array(top[:, 0].tolist(), pa.int32()),
        "top5": pa.array(top.tolist(), pa.list_(pa.int32())),
        "probabilities": pa.array(probs.float().numpy().tolist(), pa.list_(pa.float32())),
        "loss": pa.array(loss.float().tolist(), pa.float32()),
    })


def write_evaluation(folder: str | Path, video_ids: list[str], labels: torch.Tensor, probs: torch.Tensor,
                     loss: torch.Tensor, metrics: dict) -> dict[str, str]:
    """predictions.parquet, metrics.json and confusion.png into ``folder``; returns their paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    table = predictions_table(video_ids, labels, probs, loss)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(str(out / "predictions.parquet"), sink.getvalue().to_pybytes())
    atomic_write_bytes(str(out / "metrics.json"), (json.dumps(metrics, indent=1) + "\n").encode())
    matrix = confusion_matrix(probs.argmax(1), labels, probs.shape[1])
    title = f"top-1 {metrics['top1']:.3f}, {metrics['videos']} videos"
    png = draw_confusion(matrix, out / "confusion.png", title)
    return {"predictions": str(out / "predictions.parquet"), "metrics": str(out / "metrics.json"), "confusion": str(png)}
