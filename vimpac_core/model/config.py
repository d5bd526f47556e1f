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

    layers: int = Field(6, ge=1, description="Residual blocks of the backbone.")
    hid_dim: int = Field(512, ge=1, description="Hidden width D of the backbone; attention heads = hid_dim // 64.")
    layout: str = Field(
        "T,H|W",
        description="Attention blocks of a residual block over axes T, H, W: ',' runs blocks in turn, '|' "
        "patterns in parallel (original --model efflayout<layout>, e.g. efflayoutT,H|W).",
    )
    pos_emb: PosEmb = Field(
        "hw_separation",
        description="Positional embedding: default (one flat table), temporal_separation (time + space) "
        "or hw_separation (time + height + width, as released).",
    )
    vocab_size: int = Field(
        8192, ge=1, description="Visual codes V of the tokenizer; the token table has V+5 rows (PAD V+1, MASK V+4)."
    )
    frame_size: int = Field(128, ge=1, description="Frame side S in pixels the tokens come from; divisible by downsample.")
    clip_len: int = Field(5, ge=1, description="Token frames T per clip.")
    downsample: int = Field(
        8, ge=1, description="Pixels per token along a side (the tokenizer's factor); tokens per side = frame_size // downsample."
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout probability in the backbone (embeddings, attention, MLP).")
    pre_activation: bool = Field(
        False, description="Pre-LN blocks (LayerNorm first, a final ln_post) instead of the default post-LN blocks."
    )
    halve_att: bool = Field(False, description="Attention width hid_dim / 2 instead of hid_dim (not with pre_activation).")
    halve_mlp: bool = Field(False, description="MLP hidden width 2 * hid_dim instead of 4 * hid_dim.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute each block's activations in the backward pass to save memory (original --grad-checkpoint)."
    )
    nce_proj_layers: int = Field(2, ge=1, description="Layers of the contrastive projection head on CLS.")
    nce_proj_hid_dim: int = Field(2048, ge=1, description="Width of the contrastive head's hidden layers.")
    nce_bn_after_proj: bool = Field(False, description="BatchNorm after the contrastive head's last (256-wide) layer.")
    nce_temperature: float = Field(0.2, gt=0.0, description="Temperature of the contrastive (InfoNCE) loss.")
    mlm_weight: float = Field(1.0, ge=0.0, description="Weight of the mask-then-predict loss in the total loss.")
    nce_weight: float = Field(1.0, ge=0.0, description="Weight of the contrastive loss in the total loss.")
    last_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout probability before the fine-tuning classifier on CLS."
    )
    num_labels: int | None = Field(
        None, ge=1, description="Classes of the fine-tuning classifier; None: no classifier, or taken from the data when fine-tuning."
    )

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
