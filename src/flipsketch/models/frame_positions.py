"""Frame positions for the temporal attention of a ``UNet3DConditionModel``.

Temporal self-attention is permutation-invariant: without positions a video UNet can tell which
frame is first only through the zero padding of its temporal convolutions, and "moving to the
right" and "moving to the left" become the same clip played either way. diffusers' temporal
transformer already supports sinusoidal positions (``BasicTransformerBlock(positional_embeddings=
"sinusoidal")``), but ``UNet3DConditionModel`` never asks for them, so this module adds them to
every temporal transformer block of a built or loaded UNet.

A UNet with positions records ``frame_positions: N`` (the longest clip they cover) in its
``config.json``; ``load_unet`` restores them from there. A folder without that key (every real
ModelScope checkpoint) loads exactly as before. The sinusoids are computed, not learnt, and kept
out of the state dict, so the weights file of a UNet with positions has the same keys as one
without.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import torch
from diffusers import UNet3DConditionModel
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

from flipsketch.plugins import LAMBDA_RULE_KEY, LAMBDA_SCALE_KEY

CONFIG_KEY = "frame_positions"


def temporal_blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """Every ``BasicTransformerBlock`` that attends across frames (``transformer_in`` and the
    ``temp_attentions`` of each block)."""
    return [block for module in unet.modules() if isinstance(module, TransformerTemporalModel)
            for block in module.transformer_blocks]


def add_frame_positions(unet: UNet3DConditionModel, max_frames: int) -> UNet3DConditionModel:
    """Give every temporal transformer block sinusoidal frame positions for up to
    ``max_frames`` frames and record that in the UNet's config; returns ``unet``."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    param = next(unet.parameters())
    for block in temporal_blocks(unet):
        embedding = SinusoidalPositionalEmbedding(block.dim, max_seq_length=max_frames)
        pe = embedding.pe
        del embedding.pe
        # Computed from max_frames alone: a non-persistent buffer follows .to() but stays out
        # of the weights file.
        embedding.register_buffer("pe", pe, persistent=False)
        block.pos_embed = embedding.to(device=param.device, dtype=param.dtype)
    unet.register_to_config(**{CONFIG_KEY: int(max_frames)})
    return unet


def restore_frame_positions(unet: UNet3DConditionModel) -> UNet3DConditionModel:
    """Add the positions a loaded UNet's config asks for (none for a plain UNet)."""
    max_frames = unet.config.get(CONFIG_KEY)
    return add_frame_positions(unet, int(max_frames)) if max_frames else unet


# The keys flipsketch adds to a UNet's config.json: its frame positions, and eq. 9's constant
# and rule that the sampler reads (``sampler.attention.model_lambda_scale``/``_rule``).
OWN_CONFIG_KEYS = (CONFIG_KEY, LAMBDA_SCALE_KEY, LAMBDA_RULE_KEY)


class _DropOwnKeysNotice(logging.Filter):
    """diffusers warns that our keys are 'not expected and will be ignored' when it builds the
    UNet; the config keeps them and we read them ourselves, so that warning would mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(key in record.getMessage() for key in OWN_CONFIG_KEYS)


@contextmanager
def _quiet_config_notice():
    logger = logging.getLogger("diffusers.configuration_utils")
    notice = _DropOwnKeysNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def load_unet(source: str | os.PathLike, **kwargs) -> UNet3DConditionModel:
    """``UNet3DConditionModel.from_pretrained(source, **kwargs)`` with its frame positions."""
    with _quiet_config_notice():
        unet = UNet3DConditionModel.from_pretrained(source, **kwargs)
    return restore_frame_positions(unet)
