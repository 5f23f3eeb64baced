"""Iterative frame alignment (paper Sec. 4.2).

At an early step, the frames 2..M of the joint latents are optimised so that, denoised
together with the reference latent as frame 1 under the input prompt, frame 1's model output
matches what the reference alone gives under the null prompt (the target). Gradients reach
frames 2..M only through the UNet's temporal layers, which is exactly the coupling the loss is
meant to shape. Frame 1 never moves.

The UNet3D in diffusers has no gradient checkpointing, so ``gradient_checkpointing`` wraps its
blocks for the duration of the optimisation; this keeps alignment's peak memory close to a
plain guided forward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch.utils.checkpoint import checkpoint

from flipsketch.plugins import AlignSettings

# AlignSettings.checkpointing None: checkpoint UNets with more parameters than this.
CHECKPOINT_ABOVE = 100_000_000


OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}  # keys: ALIGN_OPTIMIZERS


@contextmanager
def gradient_checkpointing(unet) -> Iterator[None]:
    """Recompute each UNet block's activations in the backward pass instead of storing them.

    ``transformer_in`` is ModelScope's (UNet3D) and absent from other video UNets, such as
    AnimateDiff's ``UNetMotionModel``; a block a UNet lacks is skipped.
    """
    blocks = [block for block in (getattr(unet, "transformer_in", None), *unet.down_blocks,
                                  unet.mid_block, *unet.up_blocks) if block is not None]
    for block in blocks:
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward  # back to the class's forward


def gradient_align(pipe, latents: torch.Tensor, ref_latent: torch.Tensor, t,
                   cond_embeds: torch.Tensor, target: torch.Tensor,
                   settings: AlignSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise frames 2..M of ``latents`` (b, c, M, h, w); returns them and L_align per
    iteration, (iterations,) on the model's device: reading each loss on the host would stall
    a GPU once per iteration.

    ``ref_latent`` is (1, c, 1, h, w); ``target`` (1, c, 1, h, w) is the null-prompt output for
    the reference alone; ``cond_embeds`` (b, tokens, d) the input prompt's embeddings.
    """
    if settings.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {settings.optimizer!r}")
    batch = latents.shape[0]
    reference = ref_latent.expand(batch, -1, -1, -1, -1)  # (b, c, 1, h, w)
    free = latents[:, :, 1:].detach().clone().requires_grad_(True)  # (b, c, M-1, h, w)
    optimizer = OPTIMIZERS[settings.optimizer]([free], lr=settings.lr)
    losses = []
    checkpointing = settings.checkpointing
    if checkpointing is None:
        checkpointing = sum(p.numel() for p in pipe.unet.parameters()) > CHECKPOINT_ABOVE
    memory_saver = gradient_checkpointing(pipe.unet) if checkpointing else nullcontext()
    with torch.enable_grad(), memory_saver:
        for _ in range(settings.iterations):
            joint = torch.cat([reference, free], dim=2)  # (b, c, M, h, w)
            first = pipe.predict(joint, t, cond_embeds)[:, :, :1].float()  # (b, c, 1, h, w)
            # Summed over the batch so that each sample's gradient is its own loss's gradient.
            loss = ((first - target) ** 2).mean(dim=(1, 2, 3, 4)).sum()
            # Gradients for the free frames only; the UNet's weights never collect any.
            (free.grad,) = torch.autograd.grad(loss, free)
            optimizer.step()
            losses.append(loss.detach() / batch)
    return torch.cat([reference, free.detach()], dim=2), torch.stack(losses)
