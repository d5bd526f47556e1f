"""What a decoder worker reuses between a probe and the decode that follows on decord's seeking
path (``method='seek'``): the probe's decord reader (opened at the size the decode will need) and
the probe's orientation, only for the same, unchanged file; frames stay those of a fresh decode.
Run in this process (the worker's code)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tests.video.test_decode import collect, reference
from vimpac_core.video import ViewSpec, probe
from vimpac_core.video import decode as decode_module
from vimpac_core.video.probe import probe_local

VIEWS = [ViewSpec(32, 32, "center", False), ViewSpec(40, 32, "top", True)]


@pytest.fixture()
def counted(monkeypatch):
    """Counts decord opens and PyAV opens made by the decode module."""
    calls = {"decord": 0, "pyav": 0}
    open_reader, open_video = decode_module._open_reader, decode_module.open_video

    def count_reader(*args):
        calls["decord"] += 1
        return open_reader(*args)

    def count_video(*args):
        calls["pyav"] += 1
        return open_video(*args)

    monkeypatch.setattr(decode_module, "_open_reader", count_reader)
    monkeypatch.setattr(decode_module, "open_video", count_video)
    monkeypatch.setattr(decode_module, "_last_sides", ())
    decode_module._probe_reader.clear()
    decode_module._ORIENTATIONS.clear()
    return calls


def _probe_then_decode(path: str, scratch: str) -> tuple:
    info = probe_local(path, open_reader=decode_module.open_reader_for_probe)
    idx, _ = info.select(5)
    return info, idx, collect(decode_module.decode_windows(path, idx, VIEWS, 8, scratch, method="seek"))


def test_the_decode_reuses_the_probes_reader_and_orientation(counted, clips, tmp_path):
    first, second = str(clips["cfr30"]), str(clips["ntsc"])
    _probe_then_decode(first, str(tmp_path))  # no earlier decode: the probe opens the coded size
    assert counted == {"decord": 3, "pyav": 0}  # probe + one reader per short side; orientation known
    counted["decord"] = 0
    info, idx, got = _probe_then_decode(second, str(tmp_path))
    assert counted == {"decord": 2, "pyav": 0}  # the probe's reader served the short side 32
    assert not decode_module._probe_reader and decode_module._last_sides == (32, 40)  # handed over, not kept
    plain = probe_local(second)  # counted at the coded size: the same frames and times
    assert plain.num_frames == info.num_frames and np.array_equal(plain.frame_times, info.frame_times)
    for view in VIEWS:
        assert np.array_equal(got[view.name], reference(second, idx, view)), view.name


def test_a_changed_file_is_opened_afresh(counted, clips, tmp_path):
    path = str(tmp_path / "clip.mp4")
    shutil.copy(clips["cfr30"], path)
    _probe_then_decode(path, str(tmp_path))
    info = probe_local(path, open_reader=decode_module.open_reader_for_probe)
    shutil.copy(clips["cfr24"], path)  # another video under the same name before the decode
    os.utime(path, ns=(1, 1))
    counted.update(decord=0, pyav=0)
    idx = np.arange(0, 72, 6)
    got = collect(decode_module.decode_windows(path, idx, VIEWS, 8, str(tmp_path), method="seek"))
    assert counted == {"decord": 2, "pyav": 1}  # nothing of the probed file was used
    assert probe(path).num_frames == 72 != info.num_frames
    for view in VIEWS:
        assert np.array_equal(got[view.name], reference(path, idx, view)), view.name
