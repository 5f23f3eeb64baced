"""Clips of different lengths in one UNet call.

A step of Algorithm 1 runs the reference pass eps([x_t^r]^N, t, P_null) on an N-frame clip and
the joint pass on the M-frame clips of the batch, N = M - i shrinking step by step. A video UNet
batches clips of one length only, so they were two calls, and on a CPU a call on a short clip
costs far more than its frames' share (one frame 45 ms, ten frames 207 ms on the embedded
model): the fixed cost of a call is paid again for little work.

In ``UNet3DConditionModel`` only the temporal layers (``transformer_in``, every block's
``temp_convs`` and ``temp_attentions``) mix the frames of a clip; convolutions, group norms,
spatial self-attention and cross-attention see each frame on its own, with its clip's text
embedding. So clips of any lengths can share one call: their frames go in as a batch of
one-frame clips, each frame with its own embedding, and each temporal layer is called once per
group of equally long clips with that group's frame count, in the groups' order. Every frame
then meets exactly the arithmetic of a call on its own group; only float rounding may differ
(a larger batch may sum in another order).

While a temporal layer computes a group, ``ClipLayout.active`` names it: attention composition
reads it to capture in the reference group and compose in the joint group of the same call.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from diffusers import UNet3DConditionModel
from diffusers.models.resnet import TemporalConvLayer
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

# The layers of UNet3DConditionModel that see more than one frame at a time.
TEMPORAL_LAYERS = (TransformerTemporalModel, TemporalConvLayer)


@dataclass
class ClipLayout:
    """The groups of one call: ``shapes[g]`` is (clips, frames) of group g, whose frames come
    after those of groups 0..g-1 in the call's batch of frames."""

    shapes: list[tuple[int, int]]
    active: int | None = field(default=None)  # the group a temporal layer is computing now

    def rows(self, group: int) -> slice:
        """Where group ``group``'s frames are in the call's (frames, ...) batch."""
        start = sum(clips * frames for clips, frames in self.shapes[:group])
        clips, frames = self.shapes[group]
        return slice(start, start + clips * frames)

    @property
    def sizes(self) -> list[int]:
        return [clips * frames for clips, frames in self.shapes]


# The layout of the one-call step each UNet is computing now (``layout_in_progress``).
_IN_PROGRESS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layout_in_progress(unet) -> ClipLayout | None:
    """The layout of the ``predict_clips`` call ``unet`` is computing, None in a plain call: a
    hook on the UNet sees a one-call step's frames as one-frame clips, and this says which
    group each belongs to."""
    return _IN_PROGRESS.get(unet)


def supports_one_call(unet) -> bool:
    """Whether ``predict_clips`` knows every layer of ``unet`` that mixes frames: only
    ``UNet3DConditionModel`` (ModelScope) is read that way; other video UNets (AnimateDiff's
    motion modules) keep one call per clip length."""
    return type(unet) is UNet3DConditionModel


def _per_group(forward, layout: ClipLayout, hidden_states: torch.Tensor, *args, **kwargs):
    """A temporal layer's forward, called once per group with the group's frame count."""
    outputs = []
    for group, part in enumerate(hidden_states.split(layout.sizes)):  # (clips*frames, c, h, w)
        layout.active = group
        kwargs["num_frames"] = layout.shapes[group][1]
        outputs.append(forward(part, *args, **kwargs))
    layout.active = None
    if isinstance(outputs[0], tuple):  # TransformerTemporalModel with return_dict=False
        return (torch.cat([out[0] for out in outputs]),)
    return torch.cat(outputs)


@contextmanager
def grouped_temporal_layers(unet, layout: ClipLayout) -> Iterator[None]:
    """Make every temporal layer of ``unet`` compute ``layout``'s groups apart."""
    layers = [m for m in unet.modules() if isinstance(m, TEMPORAL_LAYERS)]
    # A hook (accelerate's) may have set a forward on the instance already: it is put back.
    own = [layer.__dict__.get("forward") for layer in layers]
    for layer in layers:
        layer.forward = functools.partial(_per_group, layer.forward, layout)
    _IN_PROGRESS[unet] = layout
    try:
        yield
    finally:
        del _IN_PROGRESS[unet]
        for layer, forward in zip(layers, own, strict=True):
            if forward is None:
                del layer.forward  # back to the class's forward
            else:
                layer.forward = forward


def predict_clips(unet, clips: Sequence[tuple[torch.Tensor, torch.Tensor]], t
                  ) -> list[torch.Tensor]:
    """One UNet call on clips of different lengths: ``clips`` are (latents (b, c, f, h, w),
    text embeddings (b, tokens, d)) pairs; returns each pair's model output, float, shaped as
    its latents. During the call ``layout_in_progress(unet)`` says which frames are whose."""
    layout = ClipLayout([(x.shape[0], x.shape[2]) for x, _ in clips])
    # Frames as one-frame clips: (clips*frames, c, 1, h, w), embeddings repeated per frame.
    frames = torch.cat([x.transpose(1, 2).flatten(0, 1) for x, _ in clips])[:, :, None]
    embeds = torch.cat([e.repeat_interleave(x.shape[2], dim=0) for x, e in clips])
    with grouped_temporal_layers(unet, layout):
        out = unet(frames.to(unet.dtype), t, encoder_hidden_states=embeds.to(unet.dtype)).sample
    out = out[:, :, 0].float()  # (clips*frames, c, h, w)
    return [part.unflatten(0, (b, f)).transpose(1, 2)  # (b, c, f, h, w)
            for part, (b, f) in zip(out.split(layout.sizes), layout.shapes, strict=True)]
