"""write_synthetic_video: frames carry their index, VFR times land in the container, bad args fail."""

from __future__ import annotations

import av
import numpy as np
import pytest

from vimpac_core.video import read_frame_index, write_synthetic_video


def test_every_frame_reads_back_its_index(tmp_path):
    path = write_synthetic_video(tmp_path / "c.mp4", num_frames=50, fps=25, width=96, height=64, seed=4)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert [read_frame_index(f) for f in frames] == list(range(50))
    assert frames[0].shape == (64, 96, 3)
    assert not np.array_equal(frames[10][20:], frames[11][20:])  # the shapes move


def test_vfr_times_are_the_presentation_times(tmp_path):
    times = [0.0, 0.04, 0.3, 0.31, 1.0, 1.5]
    path = write_synthetic_video(
        tmp_path / "v.mp4", num_frames=6, fps=10, width=32, height=32, frame_times=times
    )
    with av.open(str(path)) as container:
        got = [float(f.time) for f in container.decode(video=0)]
    assert np.allclose(got, times, atol=1e-4)


def test_seed_changes_the_content(tmp_path):
    a = write_synthetic_video(tmp_path / "a.mp4", num_frames=2, fps=5, width=32, height=32, seed=0)
    b = write_synthetic_video(tmp_path / "b.mp4", num_frames=2, fps=5, width=32, height=32, seed=1)
    assert a.read_bytes() != b.read_bytes()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_frames=0),
        dict(width=33),
        dict(fps=0),
        dict(frame_times=[0.0, 0.0, 0.1]),
        dict(frame_times=[0.0, 0.1]),
    ],
)
def test_bad_arguments(tmp_path, kwargs):
    args = dict(num_frames=3, fps=10, width=32, height=32) | kwargs
    with pytest.raises(ValueError):
        write_synthetic_video(tmp_path / "x.mp4", **args)
