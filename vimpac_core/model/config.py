"""VimpacConfig: the model's hyper-parameters, named like the original training flags.

Validation happens at construction, before any tensor is allocated; every error names the field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AXES = "THW"
PosEmb = Literal["default", "temporal_separation", "hw_separation"]
NCE_DIM = 256  # width of the contrastive projection (fixed in the release)


LAYOUT_PREFIX = "efflayout"  # every choice of the original --model flag starts with it (param.py)


def layout_from_model_flag(value: object) -> str | None:
    """The original ``--model`` value ('efflayoutT,H|W') -> our layout ('T,H|W'); None when it names none."""
    if isinstance(value, str) and value.startswith(LAYOUT_PREFIX):
        return value[len(LAYOUT_PREFIX):]
    return None


def parse_layout(layout: str) -> list[list[str]]:
    """'T,H|W' -> [['T'], ['H', 'W']]: attention blocks in order, each a list of parallel axes."""
    blocks = []
    for block in layout.replace(" ", "").split(","):
        axes = block.split("|")
        if not block or any(a not in AXES or len(a) != 1 for a in axes):
            raise ValueError(
                f"layout {layout!r}: block {block!r} must be axes T, H or W joined by '|' "
                "(blocks separated by ',', e.g. 'T,H|W')"
            )
        if len(set(axes)) != len(axes):
            raise ValueError(f"layout {layout!r}: block {block!r} repeats an axis")
        blocks.append(axes)
    return blocks


class VimpacConfig(BaseModel):
    """Backbone, heads and loss weights. Defaults are the released small model (T,H|W, hw_separation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: int = Field(6, ge=1)
    hid_dim: int = Field(512, ge=1)
    layout: str = "T,H|W"
    pos_emb: PosEmb = "hw_separation"
    vocab_size: int = Field(8192, ge=1)
    frame_size: int = Field(128, ge=1)
    clip_len: int = Field(5, ge=1)
    downsample: int = Field(8, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    pre_activation: bool = False
    halve_att: bool = False
    halve_mlp: bool = False
    gradient_checkpointing: bool = False
    nce_proj_layers: int = Field(2, ge=1)
    nce_proj_hid_dim: int = Field(2048, ge=1)
    nce_bn_after_proj: bool = False
    nce_temperature: float = Field(0.2, gt=0.0)
    mlm_weight: float = Field(1.0, ge=0.0)
    nce_weight: float = Field(1.0, ge=0.0)
    last_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    num_labels: int | None = Field(None, ge=1)

    @field_validator("layout")
    @classmethod
    def _check_layout(cls, value: str) -> str:
        parse_layout(value)
        return value.replace(" ", "")

    @model_validator(mode="after")
    def _check_shapes(self) -> VimpacConfig:
        if self.frame_size % self.downsample:
            raise ValueError(
                f"frame_size {self.frame_size} must be divisible by downsample {self.downsample}"
            )
        if self.pre_activation and self.halve_att:
            raise ValueError("halve_att: the pre_activation variant has no halved attention; set one of them")
        for axes in self.blocks:
            k = len(axes)
            heads, width = self.num_heads, self.att_dim
            if heads % k or width % k or (width // k) % (heads // k):
                raise ValueError(
                    f"hid_dim {self.hid_dim} gives {heads} heads of an attention width {width}, which "
                    f"cannot be split over the {k} parallel patterns of layout {self.layout!r}: choose a "
                    f"hid_dim whose head count (hid_dim // 64) is divisible by {k}"
                )
        return self

    @property
    def blocks(self) -> list[list[str]]:
        """The parsed layout: attention blocks of one residual block, each a list of axes."""
        return parse_layout(self.layout)

    @property
    def grid_size(self) -> int:
        """Tokens per side of a frame (frame_size // downsample)."""
        return self.frame_size // self.downsample

    @property
    def pad_id(self) -> int:
        return self.vocab_size + 1

    @property
    def mask_id(self) -> int:
        return self.vocab_size + 4

    @property
    def num_embeddings(self) -> int:
        """Rows of the token table: V visual codes plus 5 special tokens."""
        return self.vocab_size + 5

    @property
    def num_heads(self) -> int:
        return max(1, self.hid_dim // 64)

    @property
    def att_dim(self) -> int:
        """Width of the concatenated attention output (hid_dim, halved with halve_att)."""
        return self.hid_dim // 2 if self.halve_att else self.hid_dim

    @property
    def mlp_dim(self) -> int:
        return self.hid_dim * (2 if self.halve_mlp else 4)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """(T, H, W) of the token grid the positional tables are built for."""
        return (self.clip_len, self.grid_size, self.grid_size)
