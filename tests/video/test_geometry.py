"""crop_box, ViewSpec and view_set against DATA.md's geometry."""

from __future__ import annotations

import numpy as np
import pytest

from vimpac_core.video import CROPS, ViewSpec, crop_box, view_set


def formula(h, w, s, out, f):
    rh, rw = (int(h * s / w), s) if h >= w else (s, int(w * s / h))
    return rh, rw, int(f * (rh - out) / 2), int(f * (rw - out) / 2)


@pytest.mark.parametrize("h,w", [(720, 1280), (272, 640), (1280, 720), (480, 480), (144, 176), (333, 500)])
@pytest.mark.parametrize("s,out", [(128, 128), (160, 128), (128, 112)])
def test_crop_box_matches_formula(h, w, s, out):
    for f, name in enumerate(CROPS):
        assert crop_box(h, w, s, out, name) == formula(h, w, s, out, f)
        assert crop_box(h, w, s, out, f) == formula(h, w, s, out, f)


def test_crop_box_known_values():
    assert crop_box(720, 1280, 128, 128, "center") == (128, 227, 0, 49)
    assert crop_box(720, 1280, 160, 128, "bottom") == (160, 284, 32, 156)
    assert crop_box(1280, 720, 128, 128, "top") == (227, 128, 0, 0)


@pytest.mark.parametrize(
    "args",
    [
        (720, 1280, 100, 128, "center"),
        (720, 1280, 128, 128, "middle"),
        (720, 1280, 128, 128, 3),
        (0, 1280, 128, 128, "top"),
    ],
)
def test_crop_box_rejects(args):
    with pytest.raises(ValueError):
        crop_box(*args)


def test_view_names_and_parse():
    v = ViewSpec(160, 128, "top", True)
    assert v.name == "s160-top-flip"
    assert ViewSpec(128, 128, "center", False).name == "s128-center-noflip"
    assert ViewSpec.parse("s160-top-flip", 128) == v
    for bad in ("s160-left-flip", "160-top-flip", "s160-top"):
        with pytest.raises(ValueError, match="view name"):
            ViewSpec.parse(bad, 128)


def test_view_sets():
    assert [v.name for v in view_set("pretrain", 128)] == ["s128-center-noflip"]
    ft = view_set("finetune", 128)
    assert len(ft) == 12 and len({v.name for v in ft}) == 12
    assert {v.short_side for v in ft} == {128, 160} and all(v.out_size == 128 for v in ft)
    nf = view_set("finetune", 128, flip=False)
    assert len(nf) == 6 and not any(v.flip for v in nf)
    assert [v.name for v in view_set("test", 112)] == [
        "s112-top-noflip",
        "s112-center-noflip",
        "s112-bottom-noflip",
    ]
    assert [v.name for v in view_set("s128-top-flip,s160-center-noflip", 128)] == [
        "s128-top-flip",
        "s160-center-noflip",
    ]
    with pytest.raises(ValueError):
        view_set("s128-top-flip,s128-top-flip", 128)
    with pytest.raises(ValueError):
        view_set("s96-top-flip", 128)  # crop larger than the short side


def test_apply_crops_then_flips():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 10, 16, 3), dtype=np.uint8)
    view = ViewSpec(10, 8, "bottom", True)
    _, _, y0, x0 = crop_box(10, 16, 10, 8, "bottom")
    assert np.array_equal(view.apply(frames), frames[:, y0 : y0 + 8, x0 : x0 + 8][:, :, ::-1])
