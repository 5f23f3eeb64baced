"""Prediction-type arithmetic shared by the sampler, the inversion and the training loop.

A model may predict the noise (``epsilon``, ModelScope), the clean sample (``sample``) or the
velocity (``v_prediction``, the embedded tiny model). Everything that reasons about x_0 and
epsilon goes through these two functions, so each stage honours ``scheduler.config`` instead of
assuming epsilon.
"""

from __future__ import annotations

import torch


def _alpha_bar(scheduler, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t broadcast against ``like``.

    t < 0 means "after the last step": the scheduler's ``final_alpha_cumprod`` (1 when
    ``set_alpha_to_one``), the level a DDIM sampler ends at and an inversion starts from.
    """
    # Everything on the sample's device: diffusers keeps ``alphas_cumprod`` on the CPU whatever
    # ``pipe.to()`` does, and the timestep may come from anywhere (a Python int, the scheduler's
    # host-side timesteps); mixing a 1-D CPU tensor into a CUDA ``torch.where`` fails.
    t = torch.as_tensor(t).to(like.device).long().reshape(-1)
    alphas = scheduler.alphas_cumprod.to(like.device, torch.float32)
    final = torch.as_tensor(getattr(scheduler, "final_alpha_cumprod", 1.0), dtype=torch.float32)
    alpha = torch.where(t >= 0, alphas[t.clamp(min=0)], final.to(like.device))
    return alpha.reshape(-1, *([1] * (like.ndim - 1)))


def split_prediction(scheduler, model_output: torch.Tensor, sample: torch.Tensor,
                     t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, epsilon) implied by ``model_output`` for ``sample`` at timestep ``t``."""
    alpha = _alpha_bar(scheduler, t, sample)
    a, s = alpha.sqrt(), (1 - alpha).sqrt()
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        eps = model_output
        x0 = (sample - s * eps) / a.clamp(min=1e-8)
    elif kind == "v_prediction":
        x0 = a * sample - s * model_output
        eps = a * model_output + s * sample
    elif kind == "sample":
        x0 = model_output
        eps = (sample - a * x0) / s.clamp(min=1e-8)
    else:
        raise ValueError(f"unsupported prediction_type {kind!r}")
    return x0, eps


def training_target(scheduler, x0: torch.Tensor, noise: torch.Tensor,
                    t: torch.Tensor) -> torch.Tensor:
    """What the model should output for ``add_noise(x0, noise, t)``, in its prediction type."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise ValueError(f"unsupported prediction_type {kind!r}")


def renoise(scheduler, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """The deterministic (DDIM) sample at ``t`` built from a clean estimate and its noise."""
    alpha = _alpha_bar(scheduler, t, x0)
    return alpha.sqrt() * x0 + (1 - alpha).sqrt() * eps
