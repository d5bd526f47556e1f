"""Frame sizes whose resized width decord 0.6 cannot hand out (padded rows): regression for
"from_size == to_size (6144 vs 4608)" on a 96x64 clip at frame size 32."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.video.conftest import ffmpeg_exe
from tests.video.test_decode import collect, ffmpeg_extraction
from vimpac_core.video import crop_box, decode_views, probe, view_set, write_synthetic_video
from vimpac_core.video.geometry import resize_width


def odd_sized_copy(source, path, width: int, height: int):
    """Re-encode ``source`` at any size (yuv444p allows odd sizes; crf 10 keeps it close)."""
    subprocess.run(
        [
            ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(source),
            "-vf",
            f"scale={width}:{height}",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv444p",
            "-crf",
            "10",
            str(path),
        ],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def even_clip(tmp_path_factory):
    return write_synthetic_video(
        tmp_path_factory.mktemp("awkward") / "even.mp4", num_frames=8, fps=8, width=96, height=64, crf=10
    )


@pytest.mark.parametrize(
    "width,height,frame_size",
    [
        (96, 64, 32),  # the reported clip: resized to 48x32, rows padded
        (96, 64, 16),  # 24 px wide
        (96, 64, 48),  # 72 px wide
        (64, 96, 48),  # portrait: 48x72, padded 48-px rows
        (64, 96, 32),
        (100, 76, 32),
        (97, 65, 32),  # odd source sizes
        (65, 97, 24),
        (101, 75, 33),  # odd target width (44)
    ],
)
def test_awkward_sizes_decode_with_released_geometry(tmp_path, even_clip, width, height, frame_size):
    path = even_clip
    if (width, height) != (96, 64):
        path = odd_sized_copy(even_clip, tmp_path / f"{width}x{height}.mp4", width, height)
    info = probe(path)
    assert (info.width, info.height) == (width, height)
    idx, _ = info.select(8)
    views = view_set("test", frame_size)
    got = collect(decode_views(path, idx, views))
    for view in views:
        assert got[view.name].shape == (len(idx), frame_size, frame_size, 3)
        # Same crop as the released FFmpeg pipeline, up to resampling (a misplaced or squashed
        # crop differs by far more on these gradients).
        reference = ffmpeg_extraction(path, 8, view).astype(np.int16)
        assert np.abs(got[view.name].astype(np.int16) - reference).mean() < 5.0, view.name
    assert not np.array_equal(got[views[0].name], got[views[2].name])


def test_resize_width_keeps_flat_and_linear_content():
    flat = np.full((2, 3, 72, 3), 77, np.uint8)
    assert np.array_equal(resize_width(flat, 48), np.full((2, 3, 48, 3), 77, np.uint8))
    ramp = np.broadcast_to((np.arange(128) * 2).astype(np.uint8)[None, None, :, None], (1, 2, 128, 3))
    half = resize_width(np.ascontiguousarray(ramp), 64)[0, 0, :, 0].astype(int)
    assert np.abs(half[1:-1] - (np.arange(1, 63) * 4 + 1)).max() <= 1  # centres of pixel pairs
    assert resize_width(flat, 72) is flat
    with pytest.raises(ValueError, match="width must be positive"):
        resize_width(flat, 0)


def test_crop_box_of_the_reported_size():
    assert crop_box(64, 96, 32, 32, "center") == (32, 48, 0, 8)
