"""The forward pass (forward.py) against decord's seeking path and its full decode: the same
frames and pixels on generated and real clips, awkward widths, rotations and other codecs (HEVC
with temporal layers, VP9, MPEG-4 with B-frames); when each path is chosen; decord for a frame the
forward pass does not produce. Runs the worker's code in this process."""

from __future__ import annotations

import subprocess

import av
import decord
import numpy as np
import pytest

from tests.video.conftest import ffmpeg_exe
from tests.video.test_awkward_sizes import odd_sized_copy
from tests.video.test_decode import collect, reference
from vimpac_core.video import ViewSpec, probe, view_set, write_synthetic_video
from vimpac_core.video import decode as decode_module
from vimpac_core.video.forward import PacketIndex, decord_width, forward_is_cheaper, index_packets
from vimpac_core.video.probe import probe_local

VIEWS = [ViewSpec(32, 32, "center", False), ViewSpec(40, 32, "bottom", True), ViewSpec(40, 32, "top", False)]


@pytest.fixture()
def decord_opens(monkeypatch):
    """Counts decord readers opened by the decode module."""
    calls = []
    open_reader = decode_module._open_reader

    def count(*args):
        calls.append(args)
        return open_reader(*args)

    monkeypatch.setattr(decode_module, "_open_reader", count)
    decode_module._probe_reader.clear()
    return calls


def both_paths(path, idx, views, window, scratch) -> tuple[dict, dict]:
    run = lambda method: collect(  # noqa: E731
        decode_module.decode_windows(str(path), idx, views, window, str(scratch), method=method)
    )
    return run("forward"), run("seek")


@pytest.mark.parametrize(
    "clip,fps,window",
    [("cfr30", 7.5, 5), ("ntsc", 2, 32), ("vfr", 5, 3), ("portrait", 4, 4), ("rot90", 6, 4), ("rot180", 3, 2),
     ("one_frame", 30, 1), ("cfr24", 60, 7)],  # 60 fps from 24: indices repeat, also across windows
)
def test_forward_pass_gives_the_seeking_paths_pixels(clips, tmp_path, clip, fps, window):
    idx, _ = probe(clips[clip]).select(fps)
    forward, seek = both_paths(clips[clip], idx, VIEWS, window, tmp_path)
    for view in VIEWS:
        assert forward[view.name].shape == (len(idx), 32, 32, 3)
        assert np.array_equal(forward[view.name], seek[view.name]), view.name


def test_after_the_probe_the_forward_pass_opens_no_decord(clips, tmp_path, decord_opens):
    idx, _ = probe_local(str(clips["cfr30"]), open_reader=decode_module.open_reader_for_probe).select(7.5)
    decord_opens.clear()  # the probe's own, which counted the frames
    got = collect(decode_module.decode_windows(str(clips["cfr30"]), idx, VIEWS, 6, str(tmp_path), method="forward"))
    assert decord_opens == []
    for view in VIEWS:
        assert np.array_equal(got[view.name], reference(clips["cfr30"], idx, view)), view.name


def test_the_forward_pass_reuses_the_probes_container(clips, tmp_path, decord_opens, monkeypatch):
    pyav_opens = []
    open_video = decode_module.open_video
    monkeypatch.setattr(decode_module, "open_video", lambda *a: pyav_opens.append(a) or open_video(*a))
    path = str(clips["ntsc"])
    info = probe_local(path, open_reader=decode_module.open_reader_for_probe,
                       keep_container=decode_module.keep_container_for_decode)
    assert len(decode_module._probe_container) == 1
    decord_opens.clear()  # the probe's own
    idx, _ = info.select(6)
    got = collect(decode_module.decode_windows(path, idx, VIEWS, 4, str(tmp_path)))
    assert pyav_opens == [] and decord_opens == [] and not decode_module._probe_container
    for view in VIEWS:
        assert np.array_equal(got[view.name], reference(path, idx, view)), view.name


@pytest.mark.parametrize("name", ["bikes", "bigbuckbunny"])
def test_forward_pass_on_real_clips(sample_videos, tmp_path, name):
    idx, _ = probe(sample_videos[name]).select(2)
    views = view_set("finetune", 64, flip=False)  # short sides 64 and 80, three crops
    forward, seek = both_paths(sample_videos[name], idx, views, 8, tmp_path)
    for view in views:
        assert np.array_equal(forward[view.name], seek[view.name]), view.name


def test_decord_width_predicts_which_widths_decord_refuses(tmp_path):
    clip = odd_sized_copy(_tiny(tmp_path), tmp_path / "wide.mp4", 260, 20)
    for width in range(8, 260):
        reader = decord.VideoReader(str(clip), width=width, height=16, num_threads=1)
        try:
            reader.get_batch([0])
            refused = False
        except decord.DECORDError:
            refused = True
        assert (decord_width(width) != width) == refused, width


def _tiny(tmp_path):
    from vimpac_core.video import write_synthetic_video

    return write_synthetic_video(tmp_path / "tiny.mp4", num_frames=2, fps=2, width=64, height=48, crf=10)


@pytest.mark.parametrize("width,height,frame_size", [(96, 64, 32), (64, 96, 48), (101, 75, 33)])
def test_forward_pass_at_widths_decord_pads(tmp_path, width, height, frame_size):
    clip = odd_sized_copy(_tiny(tmp_path), tmp_path / f"{width}x{height}.mp4", width, height)
    views = view_set("test", frame_size)
    forward, seek = both_paths(clip, np.array([0, 1, 1]), views, 2, tmp_path)
    for view in views:
        assert np.array_equal(forward[view.name], seek[view.name]), view.name


def test_a_frame_the_forward_pass_does_not_produce_comes_from_decord(clips, tmp_path, decord_opens):
    path = str(clips["cfr30"])
    container = decode_module._forward_container(path)
    packets = index_packets(container)
    shifted = packets.pts.copy()
    shifted[12] += 1  # no decoded frame carries this pts: frame 12 is "missing"
    idx = np.arange(0, 30, 3)
    windows = [np.unique(idx[:5]), np.unique(idx[5:])]
    sizes = {32: (32, 42)}
    got = list(decode_module._forward_windows(
        container, path, PacketIndex(shifted, packets.keyframes), windows, sizes
    ))
    assert [args[1:] for args in decord_opens] == [(32, 42)]  # opened once, for the missing frame
    frames = np.concatenate([w[32] for w in got])
    expected = decord.VideoReader(path, width=42, height=32).get_batch(idx.tolist()).asnumpy()
    assert np.array_equal(frames, expected)


def test_frames_decord_numbers_otherwise_take_the_seeking_path(clips, tmp_path, decord_opens):
    path = str(clips["cfr24"])
    info = probe_local(path, open_reader=decode_module.open_reader_for_probe)
    decode_module._remember(decode_module._DECORD_COUNTS, path, info.num_frames + 1)  # as if decord saw more
    decord_opens.clear()
    idx, _ = info.select(8)
    got = collect(decode_module.decode_windows(path, idx, VIEWS, 4, str(tmp_path)))
    assert decord_opens  # the seeking path's readers: after a probe the forward pass opens none
    for view in VIEWS:
        assert np.array_equal(got[view.name], reference(path, idx, view)), view.name
    with pytest.raises(ValueError, match="as many as decord counts"):
        list(decode_module.decode_windows(path, idx, VIEWS, 4, str(tmp_path), method="forward"))


def test_the_cheaper_path_is_chosen():
    packets = PacketIndex(np.arange(3000) * 512, np.arange(0, 3000, 250))  # GOPs of 250 frames
    assert forward_is_cheaper(packets, np.arange(0, 3000, 12))  # 2 fps from 25: dense
    assert not forward_is_cheaper(packets, np.array([5, 1200, 2900]))  # three frames: seek
    short_gops = PacketIndex(np.arange(3000) * 512, np.arange(0, 3000, 10))
    assert not forward_is_cheaper(short_gops, np.arange(0, 3000, 100))  # one frame per 10 GOPs


def test_truncated_files_are_left_to_the_seeking_path(bad_files):
    with av.open(str(bad_files["truncated_data"])) as container:
        assert index_packets(container) is None  # decord refuses it there


CODECS = {
    "hevc": ["-c:v", "libx265", "-x265-params", "log-level=error:bframes=4:temporal-layers=3"],
    "vp9": ["-c:v", "libvpx-vp9", "-b:v", "300k"],
    "mpeg4": ["-c:v", "mpeg4", "-bf", "2", "-q:v", "3"],  # B-frames: nothing references them
}


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_forward_pass_on_other_codecs(tmp_path, decord_opens, codec):
    source = write_synthetic_video(tmp_path / "src.mp4", num_frames=36, fps=30, width=128, height=96, crf=10)
    path = tmp_path / f"{codec}.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(source), *CODECS[codec],
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    info = probe_local(str(path), open_reader=decode_module.open_reader_for_probe)
    assert info.codec == codec
    decord_opens.clear()
    idx, _ = info.select(7)
    got = collect(decode_module.decode_windows(str(path), idx, VIEWS, 4, str(tmp_path)))
    assert decord_opens == []  # every chosen frame came from the forward pass
    for view in VIEWS:  # decord's full sequential decode (its seeking path is off for mpeg4 B-frames)
        assert np.array_equal(got[view.name], reference(path, idx, view)), view.name
