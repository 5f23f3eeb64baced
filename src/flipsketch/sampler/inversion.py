"""DDIM inversion (paper Sec. 4.1): the sketch's latent -> the reference noise x_T^r.

The sampler's deterministic DDIM step from level t to the next lower level s is affine in the
sample for a fixed model output: x_s = A * x_t + B(out). Inversion walks the sampler's
timesteps upwards and solves that step for x_t, with the one approximation of DDIM inversion:
the model output at x_t is taken at the sample we already have (x_s). Written this way it
holds for every prediction type (epsilon for ModelScope, v for the tiny model), so denoising
the result with the same prompt and schedule comes back to the input.
"""

from __future__ import annotations

import torch

from flipsketch.plugins import hookimpl
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


@hookimpl
def register_inverters(register) -> None:
    register("ddim", ddim_invert)
