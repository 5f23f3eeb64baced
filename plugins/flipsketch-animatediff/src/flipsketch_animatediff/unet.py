"""The AnimateDiff UNet in the form flipsketch's sampler calls a video UNet.

flipsketch's sampler calls its UNet as ``unet(latents, t, encoder_hidden_states=embeds)``
with latents (b, c, f, h, w) and one prompt embedding per clip, (b, tokens, d): the calling
convention of ``UNet3DConditionModel``, which repeats the embeddings over the frames itself.
diffusers' ``UNetMotionModel`` takes the same latents but leaves that repeat to its pipeline
(``AnimateDiffPipeline`` passes (b*f, tokens, d)), so the spatial cross-attention of a
(b*f)-frame batch would meet b embeddings. ``FlipSketchMotionUNet`` does the repeat in
``forward`` and is otherwise ``UNetMotionModel`` itself: a subclass rather than a wrapper, so
its module paths, attention processors, config (``sample_size``, ``in_channels``) and weights
are exactly diffusers', and whatever walks the UNet (the composer, LoRA injection) sees the
real AnimateDiff module tree.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

from flipsketch.errors import UsageError


class FlipSketchMotionUNet(UNetMotionModel):
    """``UNetMotionModel`` that takes one (b, tokens, d) prompt embedding per clip."""

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                *args, **kwargs):
        """``sample`` (b, c, f, h, w); ``encoder_hidden_states`` (b, tokens, d), or already
        per frame (b*f, tokens, d) as ``AnimateDiffPipeline`` passes it."""
        batch, frames = sample.shape[0], sample.shape[2]
        limit = self.config.motion_max_seq_length  # frames the motion positions cover
        if frames > limit:
            raise UsageError(f"this motion adapter animates at most {limit} frames, asked for "
                             f"{frames}; pass --frames {limit} or fewer")
        if encoder_hidden_states.shape[0] == batch and frames > 1:
            # (b, tokens, d) -> (b*f, tokens, d), frame-minor like the (b*f, c, h, w) batch
            # UNetMotionModel builds from the latents.
            encoder_hidden_states = encoder_hidden_states.repeat_interleave(frames, dim=0)
        return super().forward(sample, timestep, encoder_hidden_states, *args, **kwargs)


class _EmptyFloat32ListNotice(logging.Filter):
    """diffusers warns on every ``ModelMixin.to(dtype)`` that "modules ... should be kept in
    float32: []" when the list is empty (``from_unet2d`` ends with such a call). Nothing is
    kept in float32, so the warning would only mislead; a non-empty list still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


@contextmanager
def _quiet_empty_float32_notice() -> Iterator[None]:
    logger = logging.getLogger("diffusers.models.modeling_utils")
    notice = _EmptyFloat32ListNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def motion_unet(unet2d: UNet2DConditionModel, adapter: MotionAdapter) -> FlipSketchMotionUNet:
    """A Stable Diffusion UNet with the adapter's motion modules after each block's spatial
    layers (``UNetMotionModel.from_unet2d``), in the 2D UNet's dtype."""
    with _quiet_empty_float32_notice():
        return FlipSketchMotionUNet.from_unet2d(unet2d, adapter)

