"""Sketch-guided real video (paper Sec. 5.3, Fig. 9).

A sketch animation is an object's skeleton moving in time; an edge/scribble-conditioned video
diffusion model can dress it as a photo-real video. This uses diffusers'
``AnimateDiffControlNetPipeline``: a Stable Diffusion 1.5 base made temporal by an AnimateDiff
motion adapter, with a scribble ControlNet that follows the sketch frame by frame. All three
model ids are configurable; each is a hub id or a local diffusers folder.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from flipsketch.devices import resolve_device, resolve_dtype
from flipsketch.errors import ModelLoadError, UsageError

DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
DEFAULT_CONTROLNET = "lllyasviel/control_v11p_sd15_scribble"

@dataclass(frozen=True)
class VideoModels:
    """Where the three parts of the video model come from (hub ids or local folders)."""

    base: str = DEFAULT_BASE
    motion_adapter: str = DEFAULT_MOTION_ADAPTER
    controlnet: str = DEFAULT_CONTROLNET


def load_video_pipeline(models: VideoModels = VideoModels(), device: str | None = None,
                        dtype: str | None = None):
    """The AnimateDiff + scribble-ControlNet pipeline, on ``device`` in ``dtype``.

    Only safetensors weights are accepted (no pickles). Device and dtype resolve as for the
    sketch model (``backbone.resolve_device``/``resolve_dtype``: the best device, bf16 on CUDA,
    fp32 on the CPU). The scheduler becomes DDIM with AnimateDiff's settings (linear betas,
    linspace timesteps), which the motion adapters were trained with.
    """
    from diffusers import (
        AnimateDiffControlNetPipeline,
        ControlNetModel,
        DDIMScheduler,
        MotionAdapter,
    )
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # the recipe's own progress is on screen
    transformers_logging.disable_progress_bar()
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)

    adapter = _load("motion adapter", models.motion_adapter, MotionAdapter.from_pretrained,
                    dtype=torch_dtype)
    controlnet = _load("ControlNet", models.controlnet, ControlNetModel.from_pretrained,
                       dtype=torch_dtype)
    pipe = _load("video base model", models.base, AnimateDiffControlNetPipeline.from_pretrained,
                 motion_adapter=adapter, controlnet=controlnet, dtype=torch_dtype)
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, beta_schedule="linear", clip_sample=False,
        timestep_spacing="linspace", steps_offset=1,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(target)


def _load(what: str, model_id: str, loader: Callable, **kwargs):
    """``loader(model_id, ...)`` with every missing-weights failure as one ModelLoadError line.

    diffusers and huggingface_hub report a missing file, an unreachable hub, an invalid id and a
    folder without safetensors through several exception types, all subclasses of OSError or
    ValueError, with messages of many lines; the user needs the id and the way out.
    """
    try:
        with warnings.catch_warnings():
            # diffusers 0.42 itself passes huggingface_hub's retired `local_dir_use_symlinks`
            # when it reads a hub id's config; nothing the user (or this call) can change.
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks",
                                    category=UserWarning)
            return loader(model_id, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        if Path(model_id).is_dir():
            fix = "it must be a diffusers folder with config files and safetensors weights"
        else:
            fix = (f"run `hf download {model_id}` on a connected machine, or "
                   f"point the recipe at a local diffusers folder")
        raise ModelLoadError(f"cannot load the {what} '{model_id}' ({reason}); {fix}") from exc


def scribble_frames(frames: list[Image.Image], size: int) -> list[Image.Image]:
    """Sketch frames (dark strokes on white) -> ControlNet scribble frames.

    The scribble ControlNet was trained on white strokes on black, so the frames are inverted,
    made RGB and resized to the video's ``size``.
    """
    return [ImageOps.invert(f.convert("L")).convert("RGB").resize(
        (size, size), Image.Resampling.LANCZOS) for f in frames]


def sketch_to_video(pipe, frames: list[Image.Image], prompt: str, *, negative_prompt: str = "",
                    num_inference_steps: int = 25, guidance_scale: float = 7.5,
                    conditioning_scale: float = 1.0, size: int = 512, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """A photo-real video following the sketch animation ``frames``, one video frame each.

    Returns (F, size, size, 3) float32 RGB in [0, 1]. ``size`` must be a multiple of 8 (the
    VAE's factor); SD 1.5 was trained at 512.
    """
    if size % 8:
        raise UsageError(f"video size must be a multiple of 8, got {size}; use e.g. 512")
    limit = pipe.unet.config.get("motion_max_seq_length")
    if limit and len(frames) > limit:
        raise UsageError(f"the motion adapter animates at most {limit} frames, got "
                         f"{len(frames)}; use fewer frames or a smaller interpolation factor")
    if progress is not None:
        progress(0, num_inference_steps)

    def on_step_end(_pipe, step: int, _t, tensors: dict) -> dict:
        if progress is not None:
            progress(step + 1, num_inference_steps)
        return tensors

    generator = torch.Generator("cpu").manual_seed(seed)
    out = pipe(
        prompt=prompt, negative_prompt=negative_prompt, num_frames=len(frames),
        height=size, width=size, conditioning_frames=scribble_frames(frames, size),
        num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
        controlnet_conditioning_scale=conditioning_scale, generator=generator,
        output_type="np", callback_on_step_end=on_step_end,
    )
    return np.asarray(out.frames[0], dtype=np.float32)  # (F, size, size, 3)
