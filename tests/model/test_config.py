"""VimpacConfig: derived sizes, and bad values refused at construction with the field named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vimpac_core.model import VimpacConfig, VimpacForClassification


def test_small_model_defaults() -> None:
    c = VimpacConfig()
    assert (c.grid_size, c.pad_id, c.mask_id, c.num_heads, c.num_embeddings) == (16, 8193, 8196, 8, 8197)
    assert c.blocks == [["T"], ["H", "W"]]
    assert VimpacConfig(hid_dim=32, layout="T").num_heads == 1


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"layout": "T,X"}, "layout"),
        ({"layout": "T,,H"}, "layout"),
        ({"layout": "H|H"}, "layout"),
        ({"pos_emb": "rotary"}, "pos_emb"),
        ({"frame_size": 100}, "frame_size"),
        ({"hid_dim": 64, "layout": "T,H|W"}, "hid_dim"),
        ({"hid_dim": 128, "layout": "T|H|W"}, "hid_dim"),
        ({"pre_activation": True, "halve_att": True}, "halve_att"),
        ({"dropout": 1.5}, "dropout"),
        ({"layers": 0}, "layers"),
        ({"nce_temperature": 0}, "nce_temperature"),
        ({"num_labels": 0}, "num_labels"),
        ({"hidden_size": 512}, "hidden_size"),
    ],
)
def test_bad_values_name_the_field(values: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        VimpacConfig(**values)


def test_classifier_needs_num_labels() -> None:
    with pytest.raises(ValueError, match="num_labels"):
        VimpacForClassification(VimpacConfig(layers=1, hid_dim=64, layout="T", frame_size=16, clip_len=2))


def test_round_trips_through_json() -> None:
    c = VimpacConfig(layers=3, layout="H|W,T", pos_emb="default", num_labels=7)
    assert VimpacConfig.model_validate_json(c.model_dump_json()) == c
