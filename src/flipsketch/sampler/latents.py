"""Pixels <-> normalised latents, the one place that knows how a VAE's latents are scaled.

ModelScope scales latents by ``vae.config.scaling_factor``; the embedded tiny model stores a
per-channel ``latents_mean``/``latents_std`` instead (zero mean, unit variance per channel).
Grey frames are fed to 1-channel VAEs as they are and repeated to RGB for 3-channel ones.
Frames are floats in [0, 1] with 1 = paper white; the VAE sees [-1, 1].
"""

from __future__ import annotations

import torch


def _stats(vae, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) such that normalised = (z - mean) / std, shaped to broadcast on dim 1."""
    cfg = vae.config
    shape = (1, -1) + (1,) * (like.ndim - 2)
    if getattr(cfg, "latents_mean", None) is not None and getattr(cfg, "latents_std", None):
        mean = torch.tensor(cfg.latents_mean, device=like.device, dtype=like.dtype).view(shape)
        std = torch.tensor(cfg.latents_std, device=like.device, dtype=like.dtype).view(shape)
        return mean, std
    shift = getattr(cfg, "shift_factor", None) or 0.0
    return (torch.full((1,), float(shift), device=like.device, dtype=like.dtype).view(shape),
            torch.full((1,), 1.0 / cfg.scaling_factor, device=like.device, dtype=like.dtype)
            .view(shape))


def encode_frames(vae, frames: torch.Tensor, sample: bool = False,
                  generator: torch.Generator | None = None,
                  unit_range: bool = False) -> torch.Tensor:
    """(n, H, W) grey frames in [0, 1] -> (n, c, h, w) normalised latents.

    ``sample=False`` takes the posterior mean, which is what inversion wants (deterministic).
    ``unit_range`` feeds the VAE the frames as they are, in [0, 1], as the authors' demo did
    with the sketch; by default the VAE sees [-1, 1], the range it was trained on.
    """
    x = frames.to(device=vae.device, dtype=vae.dtype)[:, None]  # (n, 1, H, W) in [0, 1]
    if not unit_range:
        x = x * 2 - 1
    if vae.config.in_channels == 3:
        x = x.repeat(1, 3, 1, 1)
    posterior = vae.encode(x).latent_dist
    z = posterior.sample(generator) if sample else posterior.mode()
    mean, std = _stats(vae, z)
    return (z - mean) / std


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """(n, c, h, w) normalised latents -> (n, H, W) grey frames in [0, 1]."""
    latents = latents.to(device=vae.device, dtype=vae.dtype)
    mean, std = _stats(vae, latents)
    x = vae.decode(latents * std + mean).sample  # (n, C, H, W) in about [-1, 1]
    grey = x.float().mean(dim=1)
    return ((grey + 1) / 2).clamp(0, 1)
