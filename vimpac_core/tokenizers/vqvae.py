"""Our trainable VQ-VAE tokenizer: conv encoder (downsample 8), EMA codebook, conv decoder.

The quantizer follows van den Oord et al. (2017) with the exponential-moving-average codebook
update of VQ-VAE-2 (no codebook gradient; only the commitment loss reaches the encoder) and
restarts codes that fell out of use at random encoder outputs of the current batch.

Saved as a folder: ``config.json`` + ``model.safetensors`` (weights and EMA buffers), which is
what ``load_tokenizer("vqvae:DIR")`` reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field, PositiveInt
from torch import nn

from vimpac_core.config_base import CheckedConfig
from vimpac_core.errors import CheckpointError
from vimpac_core.model_folder import (
    load_weights,
    read_model_folder,
    write_model_folder,
)


def pixels_to_model_range(x: torch.Tensor) -> torch.Tensor:
    """float pixels [B, 3, H, W] holding 0..255 -> the VQ-VAE's input range [-1, 1], in place."""
    return x.mul_(2.0 / 255.0).sub_(1.0)


class VQVAEConfig(CheckedConfig):
    """Shape and training constants of a VQ-VAE (a ConfigError names the field of a bad value)."""

    KIND: ClassVar[str] = "VQ-VAE"
    model_config = ConfigDict(extra="forbid", frozen=True)

    codebook_size: int = Field(512, ge=2, description="Number of codes (the token vocabulary); at least 2.")
    embed_dim: int = Field(64, ge=1, description="Dimension of a code vector.")
    channels: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (32, 64, 128), description="Widths of the three stride-2 stages (downsample 2**3 = 8).")
    num_res_blocks: int = Field(2, ge=0, description="Residual blocks at the lowest resolution, in encoder and decoder.")
    in_channels: int = Field(3, ge=1, description="Picture channels (RGB).")
    commitment_cost: float = Field(0.25, ge=0, description="Beta of the commitment loss.")
    ema_decay: float = Field(0.99, gt=0, lt=1, description="Codebook EMA decay, in (0, 1).")
    ema_eps: float = Field(1e-5, gt=0, description="EMA smoothing of the code counts.")
    dead_code_threshold: float = Field(1.0, ge=0, description="A code whose EMA usage count drops below this is restarted.")

    @classmethod
    def from_dict(cls, data: dict) -> VQVAEConfig:
        """From a saved config.json: keys this version does not know are left out."""
        return cls(**{k: v for k, v in data.items() if k in cls.model_fields})


class ResBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))); keeps shape [B, C, H, W]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_2(F.relu(self.conv_1(F.relu(x))))


class VQEncoder(nn.Module):
    """[B, 3, H, W] in [-1, 1] -> [B, embed_dim, H/8, W/8]."""

    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.channels
        self.down = nn.Sequential(
            nn.Conv2d(cfg.in_channels, c1, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c2, c3, 4, stride=2, padding=1),
        )
        self.res = nn.Sequential(*[ResBlock(c3) for _ in range(cfg.num_res_blocks)])
        self.out = nn.Conv2d(c3, cfg.embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.res(self.down(x))))


class VQDecoder(nn.Module):
    """[B, embed_dim, h, w] -> [B, 3, 8h, 8w] (unbounded; trained towards [-1, 1])."""

    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.channels
        self.inp = nn.Conv2d(cfg.embed_dim, c3, 3, padding=1)
        self.res = nn.Sequential(*[ResBlock(c3) for _ in range(cfg.num_res_blocks)])
        self.up = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(c3, c2, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c1, cfg.in_channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.res(self.inp(z)))


class EMAQuantizer(nn.Module):
    """Nearest-code quantizer whose codebook follows an EMA of the vectors assigned to it.

    Buffers: ``embedding`` [K, D], ``cluster_size`` [K] (EMA counts), ``embed_avg`` [K, D].
    """

    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k, d = cfg.codebook_size, cfg.embed_dim
        # Small uniform init (as in the VQ-VAE paper's code): nearest code then depends on the
        # direction of z, so even an untrained model spreads frames over many codes.
        embed = torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k)
        self.register_buffer("embedding", embed)
        self.register_buffer("cluster_size", torch.ones(k))
        self.register_buffer("embed_avg", embed.clone())

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """flat [M, D] -> code indices [M] (int64) by squared Euclidean distance."""
        emb = self.embedding
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ emb.t() + emb.pow(2).sum(1)[None, :]
        return dist.argmin(1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [B, D, h, w] -> (quantized with straight-through grad [B, D, h, w],
        codes [B, h, w], commitment loss scalar). Updates the codebook in training mode."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        codes = self.nearest(flat.detach())
        quant = self.embedding[codes]
        if self.training:
            self._ema_update(flat.detach(), codes)
        commit = self.cfg.commitment_cost * F.mse_loss(flat, quant.detach())
        quant = flat + (quant - flat).detach()
        quant = quant.view(b, h, w, d).permute(0, 3, 1, 2)
        return quant, codes.view(b, h, w), commit

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        cfg = self.cfg
        onehot = F.one_hot(codes, cfg.codebook_size).type(flat.dtype)
        self.cluster_size.mul_(cfg.ema_decay).add_(onehot.sum(0), alpha=1 - cfg.ema_decay)
        self.embed_avg.mul_(cfg.ema_decay).add_(onehot.t() @ flat, alpha=1 - cfg.ema_decay)
        n = self.cluster_size.sum()
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        size = (self.cluster_size + cfg.ema_eps) / (n + cfg.codebook_size * cfg.ema_eps) * n
        self.embedding.copy_(self.embed_avg / size[:, None])
        self._restart_dead_codes(flat)

    def _restart_dead_codes(self, flat: torch.Tensor) -> None:
        dead = self.cluster_size < self.cfg.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        pick = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
        fresh = flat[pick] + 1e-3 * torch.randn(n_dead, flat.shape[1], device=flat.device)
        self.embedding[dead] = fresh
        self.embed_avg[dead] = fresh * self.cfg.dead_code_threshold
        self.cluster_size[dead] = self.cfg.dead_code_threshold


class VQVAE(nn.Module):
    """Encoder -> EMA quantizer -> decoder. Pictures are float [B, 3, H, W] in [-1, 1]."""

    downsample = 8

    def __init__(self, config: VQVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VQVAEConfig()
        self.encoder = VQEncoder(self.config)
        self.quantizer = EMAQuantizer(self.config)
        self.decoder = VQDecoder(self.config)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [B, 3, H, W] in [-1, 1] -> dict(recon [B,3,H,W], codes [B,H/8,W/8], loss, recon_loss,
        commit_loss)."""
        quant, codes, commit = self.quantizer(self.encoder(x))
        recon = self.decoder(quant)
        recon_loss = F.mse_loss(recon, x)
        return {"recon": recon, "codes": codes, "loss": recon_loss + commit,
                "recon_loss": recon_loss, "commit_loss": commit}

    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] in [-1, 1] (H, W multiples of 8) -> codes [B, H/8, W/8] int64.

        The encoder runs in its weights' dtype (bf16 once a tokenizer cast it); the nearest-code
        distances always in fp32 (for fp32 weights both casts are no-ops)."""
        z = self.encoder(x.to(self.encoder.out.weight.dtype)).float()
        b, d, h, w = z.shape
        return self.quantizer.nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, h, w] int -> pictures [B, 3, 8h, 8w], nominally in [-1, 1]."""
        quant = self.quantizer.embedding[codes.long()].permute(0, 3, 1, 2)
        return self.decoder(quant)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` as the folder ``directory``, atomically
        (model_folder's format, the one of every model)."""
        return write_model_folder(directory, self.state_dict(), self.config.model_dump(mode="json"), type(self).__name__,
                                  metadata={"format": "pt", "kind": "vqvae"}, sort_keys=True)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> VQVAE:
        """Load a folder written by :meth:`save_pretrained`; raises CheckpointError if it is not one."""
        raw, _, weights = read_model_folder(
            directory, "a VQ-VAE folder (write one with VQVAE.save_pretrained or `vimpac train-tokenizer`)")
        try:
            config = VQVAEConfig.from_dict(raw)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{directory}: invalid VQ-VAE config ({exc})") from exc
        model = cls(config)
        try:
            model.load_state_dict(load_weights(weights), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{weights} does not fit the config beside it: {exc}") from exc
        return model.to(device).eval()
