"""The denoising loss, shared by training (``loop``) and evaluation (caption sensitivity).

Both noise clean latents with the scheduler, ask the model for its prediction and score it
against what the model is trained to predict; one definition keeps the number evaluation
reports the same quantity that training minimises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flipsketch.sampler.schedule import training_target


def noised_batch(scheduler, x0: torch.Tensor, noise: torch.Tensor,
                 t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(model input, target) for clean latents ``x0`` noised with ``noise`` at timesteps ``t``.

    The target follows the scheduler's prediction type (``schedule.training_target``), so an
    epsilon model (ModelScope) is scored on noise and the v-prediction tiny model on velocity.
    """
    return scheduler.add_noise(x0, noise, t), training_target(scheduler, x0, noise, t)


def denoising_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample, (b,), computed in float32 whatever the model's dtype."""
    error = F.mse_loss(prediction.float(), target.float(), reduction="none")
    return error.mean(dim=tuple(range(1, error.ndim)))
