"""The frame-reading stage ingest and tokenizer training share (video.read_fps_frames)."""

from __future__ import annotations

import numpy as np
import pytest

from vimpac_core.errors import VideoError
from vimpac_core.inputs import VideoEntry
from vimpac_core.tokenizers.frames import video_frames
from vimpac_core.video import decode_views, probe, read_fps_frames, view_set
from vimpac_core.video.read import spread_positions


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from vimpac_core.video import write_synthetic_video

    return write_synthetic_video(tmp_path_factory.mktemp("read") / "c.mp4", num_frames=50, fps=25, width=96, height=64)


def test_spread_positions_keep_first_and_last():
    assert spread_positions(3, 5).tolist() == [0, 1, 2] and spread_positions(9, None).tolist() == list(range(9))
    assert spread_positions(9, 3).tolist() == [0, 4, 8]


def test_read_is_probe_select_and_decode_and_limit_spreads_frames_with_their_times(clip):
    views = view_set("pretrain", 32)
    info = probe(clip)
    indices, times = info.select(4.0)
    read = read_fps_frames(clip, 4.0, views, window=3)
    assert read.indices.tolist() == indices.tolist() and np.allclose(read.timestamps, times)
    got = np.concatenate([w[views[0].name] for w in read.windows])
    want = np.concatenate([w[views[0].name] for w in decode_views(clip, indices, views)])
    assert np.array_equal(got, want)
    few = read_fps_frames(clip, 4.0, views, limit=3)
    keep = spread_positions(len(indices), 3)
    assert few.indices.tolist() == indices[keep].tolist() and np.allclose(few.timestamps, np.asarray(times)[keep])
    # Tokenizer training reads the same pixels as ingest, spread over the video.
    tokenizer = video_frames(VideoEntry(uri=str(clip), video_id="c"), 32, 4.0, 3)
    assert np.array_equal(tokenizer, got[keep])


def test_a_video_too_short_for_one_frame_is_a_video_error(clip):
    with pytest.raises(VideoError, match=r"too short for fps=0\.2"):  # 2 s at 0.2 fps: no output frame
        read_fps_frames(clip, 0.2, view_set("pretrain", 32))
