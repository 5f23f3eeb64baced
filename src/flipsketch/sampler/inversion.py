"""DDIM inversion (paper Sec. 4.1): the sketch's latent -> the reference noise x_T^r.

The sampler's deterministic DDIM step from level t to the next lower level s is affine in the
sample for a fixed model output: x_s = A * x_t + B(out). Inversion walks the sampler's
timesteps upwards and solves that step for x_t, with the one approximation of DDIM inversion:
the model output at x_t is taken at the sample we already have (x_s). Written this way it
holds for every prediction type (epsilon for ModelScope, v for the tiny model), so denoising
the result with the same prompt and schedule comes back to the input.

``ddim`` inverts the drawing as the paper reads: encoded in [-1, 1], the posterior's mode, one
frame. The authors' demo encoded it differently in three ways, each an inverter of its own:
``ddim-unit-range`` ([0, 1] into the VAE), ``ddim-sampled`` (a posterior sample),
``ddim-5-copies`` (a 5-frame clip of the drawing inverted and averaged), and ``ddim-demo``
(all three).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from flipsketch.plugins import SketchEncoding
from flipsketch.sampler.schedule import renoise, split_prediction


def ddim_step_coefficients(scheduler, out: torch.Tensor, t, s) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with DDIM(x_t -> x_s) = A * x_t + B for model output ``out`` at timestep t."""
    zeros, ones = torch.zeros_like(out), torch.ones_like(out)
    b = renoise(scheduler, *split_prediction(scheduler, out, zeros, t), s)
    a = renoise(scheduler, *split_prediction(scheduler, zeros, ones, t), s)
    return a, b


@torch.no_grad()
def ddim_invert(pipe, latent: torch.Tensor, null_embeds: torch.Tensor,
                timesteps: torch.Tensor) -> torch.Tensor:
    """Invert ``latent`` (1, c, F, h, w) along ``timesteps`` (descending, as sampled).

    Returns the noise at ``timesteps[0]`` with the same shape. A clip of F copies of the
    sketch may be passed; the caller averages over frames if it wants one reference frame.
    """
    scheduler = pipe.scheduler
    x = latent.float()
    level = -1  # the clean end of the schedule (final_alpha_cumprod)
    for t in reversed(timesteps.tolist()):
        out = pipe.predict(x, t, null_embeds).float()  # model output at t, evaluated on x_s
        a, b = ddim_step_coefficients(scheduler, out, t, level)
        x = (x - b) / a
        level = t
    return x


@dataclass(frozen=True)
class EncodedInverter:
    """An inverter that asks for the drawing to be encoded its own way (``encoding``, read by
    the sampler through ``flipsketch.plugins.sketch_encoding``)."""

    invert: Callable
    encoding: SketchEncoding

    def __call__(self, pipe, latent: torch.Tensor, null_embeds: torch.Tensor,
                 timesteps: torch.Tensor) -> torch.Tensor:
        return self.invert(pipe, latent, null_embeds, timesteps)


# DDIM inversion of the drawing encoded as the authors' demo encoded it, one difference from
# the paper's reading (``ddim``) at a time, then all three (docs/evaluation.md measures each).
DEMO_COPIES = 5
DEMO_ENCODINGS = {
    "ddim-unit-range": SketchEncoding(unit_range=True),  # the VAE sees [0, 1], not [-1, 1]
    "ddim-sampled": SketchEncoding(sample=True),  # a posterior sample, not its mode
    f"ddim-{DEMO_COPIES}-copies": SketchEncoding(copies=DEMO_COPIES),  # a clip, averaged
    "ddim-demo": SketchEncoding(unit_range=True, sample=True, copies=DEMO_COPIES),
}
