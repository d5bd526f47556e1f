"""Pictures for reports: training curves and the mask-then-predict picture.

`training_curves` reads the scalars a run wrote to TensorBoard and draws one small line chart per
tag (pillow only, no plotting library). `masked_prediction_picture` shows what pre-training
learned: for one clip of token frames it draws, frame by frame, the tokens decoded back to pixels,
the same frames with the block mask greyed out, and the frames with the masked tokens replaced by
the model's predictions. It needs a tokenizer that can decode (our VQ-VAE, or DALL-E with its
decoder).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vimpac_core.storage import atomic_write_bytes

CHART_W, CHART_H, PAD = 360, 200, 36
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as a PNG file at ``path`` atomically (folders made); returns the path."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(str(path), buffer.getvalue())
    return Path(path)


def read_scalars(tensorboard_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files under ``tensorboard_dir`` -> [(step, value)] by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: sorted((e.step, float(e.value)) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def _chart(title: str, series: dict[str, list[tuple[int, float]]]) -> Image.Image:
    """One line chart [CHART_H, CHART_W]: steps on x, values on y, min/max labelled."""
    image = Image.new("RGB", (CHART_W, CHART_H), "white")
    draw = ImageDraw.Draw(image)
    points = [p for values in series.values() for p in values if np.isfinite(p[1])]
    draw.text((PAD, 4), title, fill="black")
    box = (PAD, 20, CHART_W - 8, CHART_H - 20)
    draw.rectangle(box, outline=(160, 160, 160))
    if not points:
        return image
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1e-9

    def at(step: float, value: float) -> tuple[float, float]:
        return (box[0] + (step - x0) / (x1 - x0) * (box[2] - box[0]),
                box[3] - (value - y0) / (y1 - y0) * (box[3] - box[1]))

    for k, (name, values) in enumerate(series.items()):
        line = [at(s, v) for s, v in values if np.isfinite(v)]
        colour = COLOURS[k % len(COLOURS)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        elif line:
            draw.ellipse([line[0][0] - 2, line[0][1] - 2, line[0][0] + 2, line[0][1] + 2], fill=colour)
        if len(series) > 1:
            draw.text((box[2] - 120, box[1] + 4 + 12 * k), name, fill=colour)
    draw.text((2, box[1]), f"{y1:.3g}", fill="black")
    draw.text((2, box[3] - 10), f"{y0:.3g}", fill="black")
    draw.text((box[0], box[3] + 4), f"step {x0}", fill="black")
    draw.text((box[2] - 70, box[3] + 4), f"step {x1}", fill="black")
    return image


def training_curves(runs: dict[str, str | Path], path: str | Path, tags: tuple[str, ...] | None = None,
                    max_charts: int = 9) -> Path | None:
    """A grid of charts, one per tag in ``tags`` (None: every tag logged, sorted, at most
    ``max_charts``), each with one line per run of ``runs`` (name -> TensorBoard folder). Tags no run
    logged are left out; None when nothing was logged."""
    scalars = {name: read_scalars(folder) for name, folder in runs.items() if Path(folder).is_dir()}
    if tags is None:
        tags = tuple(sorted({tag for values in scalars.values() for tag in values}))[:max_charts]
    charts = []
    for tag in tags:
        series = {name: values[tag] for name, values in scalars.items() if tag in values}
        if series:
            charts.append(_chart(tag, series))
    if not charts:
        return None
    cols = min(3, len(charts))
    rows = -(-len(charts) // cols)
    sheet = Image.new("RGB", (cols * CHART_W, rows * CHART_H), "white")
    for i, chart in enumerate(charts):
        sheet.paste(chart, ((i % cols) * CHART_W, (i // cols) * CHART_H))
    return save_png(sheet, path)


def masked_prediction_rows(tokenizer, codes: np.ndarray, masked: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """uint8 picture of three rows of frames: the clip's tokens decoded, the masked positions greyed
    out, and the tokens with masked positions replaced by ``predicted``.

    codes [T, h, w] (PAD frames allowed: drawn black), masked bool [T, h, w], predicted [T, h, w].
    """
    t, h, w = codes.shape
    vocab = tokenizer.vocab_size
    valid = codes < vocab  # PAD and other specials are not codes
    shown = np.where(valid, codes, 0)
    filled = np.where(masked & valid, np.clip(predicted, 0, vocab - 1), shown)
    original = tokenizer.decode(shown.astype(np.int64))
    prediction = tokenizer.decode(filled.astype(np.int64))
    scale = original.shape[1] // h
    cell = np.kron(masked, np.ones((scale, scale), dtype=bool))  # [T, H, W] token -> pixel block
    greyed = original.copy()
    greyed[cell] = (greyed[cell] // 4 + 96).astype(np.uint8)
    black = ~np.kron(valid, np.ones((scale, scale), dtype=bool))
    for frames in (original, greyed, prediction):
        frames[black] = 0
    gap = np.full((original.shape[1], 2, 3), 255, dtype=np.uint8)
    rows = [np.concatenate([np.concatenate([f, gap], axis=1) for f in frames], axis=1)
            for frames in (original, greyed, prediction)]
    band = np.full((2, rows[0].shape[1], 3), 255, dtype=np.uint8)
    return np.concatenate([rows[0], band, rows[1], band, rows[2]], axis=0)


def first_clip(data: str, clip_len: int, frame_rate: int, pad_id: int) -> np.ndarray:
    """The first clip (from frame 0) of the first video in a token shard folder: int64 [clip_len, h, w]."""
    from vimpac_core.data.sampling import take_clip
    from vimpac_core.shards.reader import RowGroupCache, ShardIndex

    index = ShardIndex.build(data)
    entry = index.videos[0]
    ref = entry.views[sorted(entry.views)[0]]
    return take_clip(RowGroupCache(index, 1).grid(ref), 0, clip_len, frame_rate, pad_id)


def masked_prediction_picture(checkpoint: str | Path, tokenizer_spec: str, codes: np.ndarray, path: str | Path, *,
                              mask_blocks: int = 2, seed: int = 0, upscale: int = 4) -> Path:
    """Block-mask one clip of token frames [T, h, w], predict the masked tokens with the pre-trained
    model in ``checkpoint``, and save the three-row picture (see `masked_prediction_rows`) to ``path``."""
    import torch

    from vimpac_core.model import VimpacForPreTraining, block_mask
    from vimpac_core.tokenizers.runtime import load_tokenizer

    model = VimpacForPreTraining.from_pretrained(checkpoint).eval()
    tokenizer = load_tokenizer(tokenizer_spec)
    cfg = model.config
    clip = torch.from_numpy(np.asarray(codes, dtype=np.int64))[None]
    gen = torch.Generator().manual_seed(seed)
    masked_codes, labels = block_mask(clip, mask_blocks, cfg.pad_id, cfg.mask_id, gen)
    with torch.no_grad():
        logits = model(masked_codes).logits[0, ..., : cfg.vocab_size]  # [T, h, w, V]: visual codes only
    picture = masked_prediction_rows(tokenizer, clip[0].numpy(), (labels[0] != -100).numpy(),
                                     logits.argmax(-1).numpy())
    image = Image.fromarray(picture)
    return save_png(image.resize((image.width * upscale, image.height * upscale), Image.NEAREST), path)
