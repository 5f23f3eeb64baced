"""The Python API: what the CLI, the recipes and the evaluation all call.

    from flipsketch.api import SamplerSettings, load_pipeline, animate, postprocess, save

    pipe = load_pipeline("tiny")
    [clip] = animate(pipe, "a fish swimming to the right", "fish.png")
    save(postprocess(clip.frames), "fish.gif")

Stages are chosen by name and looked up in the plugin registries, so anything a plugin
registers is usable here exactly like the built-ins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from flipsketch.errors import UsageError
from flipsketch.plugins import PluginManager, get_manager
from flipsketch.sampler.alignment import AlignSettings

if TYPE_CHECKING:  # diffusers is imported when a model is loaded, not for `--help`
    from flipsketch.sampler.pipeline import FlipSketchPipeline, Progress

COMPOSE_MODES = ("both", "spatial", "temporal", "none")
DEFAULT_MODEL = "tiny"


@dataclass
class SamplerSettings:
    """Every sampler option, with the paper's defaults (T = 25, M = 10, CFG 9, lambda 0.5)."""

    num_frames: int = 10
    num_inference_steps: int = 25
    guidance_scale: float = 9.0
    negative_prompt: str = ""
    lambda_: float = 0.5
    tau1: int | None = None  # alignment for steps i < tau1; default 2T/5
    tau2: int | None = None  # composition for steps i <= tau2; default 3T/5
    compose: str = "both"
    align: bool = True
    # Frame 1 follows the sketch's own denoising trajectory (its DDIM inversion, denoised
    # with the null prompt) to the last step, rather than only while alignment and
    # composition need it: frame 1 is the user's drawing. False: the paper's sampler, where
    # frame 1 joins the guided denoising once the reference is no longer used.
    keep_first_frame: bool = True
    align_iterations: int = field(default_factory=lambda: AlignSettings().iterations)
    align_lr: float = field(default_factory=lambda: AlignSettings().lr)
    align_optimizer: str = field(default_factory=lambda: AlignSettings().optimizer)
    align_checkpointing: bool | None = field(default_factory=lambda: AlignSettings().checkpointing)
    seed: int = 0
    samples: int = 1

    def validate(self) -> None:
        """Raise a one-line ``UsageError`` for the first value that cannot work."""
        checks = [
            (self.num_frames >= 2, "--frames must be at least 2"),
            (self.num_inference_steps >= 1, "--steps must be at least 1"),
            (self.guidance_scale >= 0, "--guidance must be 0 or more"),
            (self.samples >= 1, "--samples must be at least 1"),
            (self.compose in COMPOSE_MODES,
             f"--compose must be one of {', '.join(COMPOSE_MODES)}, not '{self.compose}'"),
            (self.align_iterations >= 1, "--align-iterations must be at least 1"),
            (self.align_lr > 0, "--align-lr must be positive"),
            (self.align_optimizer in ("adam", "sgd"), "--align-optimizer must be adam or sgd"),
            (self.tau1 is None or 0 <= self.tau1 <= self.num_inference_steps,
             "--tau1 must be between 0 and --steps"),
            (self.tau2 is None or -1 <= self.tau2 <= self.num_inference_steps,
             "--tau2 must be between -1 and --steps"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.samples))


@dataclass
class Animation:
    frames: np.ndarray  # (F, H, W) float32 in [0, 1], 1 = white, at the model's resolution
    seed: int
    prompt: str
    timings: dict[str, float] = field(default_factory=dict)
    align_losses: list[list[float]] = field(default_factory=list)


def check_prompt(prompt: str) -> None:
    if not prompt.strip():
        raise UsageError("the prompt is empty; describe the motion, e.g. 'a fish swimming'")


def load_pipeline(model: str = DEFAULT_MODEL, device: str | None = None,
                  dtype: str | None = None, allow_pickle: bool = False,
                  loras: list[str] | tuple[str, ...] = (), unet: str | None = None,
                  backbone: str | None = None,
                  manager: PluginManager | None = None) -> FlipSketchPipeline:
    """Load ``model`` (preset, folder or hub id) with the named backbone and LoRAs."""
    from flipsketch.models.lora import apply_loras, parse_lora
    from flipsketch.models.presets import resolve_model

    manager = manager or get_manager()
    spec = resolve_model(model, unet=unet)
    loader = manager.get("backbone", backbone)
    pipe = loader(spec, device=device, dtype=dtype, allow_pickle=allow_pickle)
    if loras:
        apply_loras(pipe.unet, [parse_lora(value) for value in loras], allow_pickle)
    return pipe


def prepare_sketch(sketch: Image.Image | str | Path, size: int) -> torch.Tensor:
    """Any sketch image or path -> (size, size) grey tensor in [0, 1] (padded, never stretched)."""
    from flipsketch.frames.images import images_to_array, load_sketch, to_grey_square

    image = load_sketch(sketch) if isinstance(sketch, (str, Path)) else sketch
    return torch.from_numpy(images_to_array([to_grey_square(image, size)])[0])


def animate(pipe: FlipSketchPipeline, prompt: str,
            sketch: Image.Image | str | Path | None = None,
            settings: SamplerSettings | None = None, *, inverter: str | None = None,
            aligner: str | None = None, composer: str | None = None,
            progress: Progress | None = None,
            manager: PluginManager | None = None) -> list[Animation]:
    """Sample ``settings.samples`` animations; ``sketch`` None is text-only generation."""
    settings = settings or SamplerSettings()
    settings.validate()
    check_prompt(prompt)
    manager = manager or get_manager()
    stages = dict(
        inverter=manager.get("inverter", inverter),
        aligner=manager.get("aligner", aligner) if settings.align else None,
        composer=manager.get("composer", composer) if settings.compose != "none" else None,
    )
    image = None if sketch is None else prepare_sketch(sketch, pipe.model_resolution)
    output = pipe(
        prompt, image, num_frames=settings.num_frames,
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale, negative_prompt=settings.negative_prompt,
        seeds=settings.seeds, tau1=settings.tau1, tau2=settings.tau2,
        lambda_=settings.lambda_, compose=settings.compose,
        keep_first_frame=settings.keep_first_frame,
        align_settings=AlignSettings(settings.align_iterations, settings.align_lr,
                                     settings.align_optimizer, settings.align_checkpointing),
        progress=progress, **stages,
    )
    return [Animation(frames=output.frames[k].numpy(), seed=seed, prompt=prompt,
                      timings=output.timings, align_losses=output.align_losses)
            for k, seed in enumerate(output.seeds)]


def postprocess(frames: np.ndarray, name: str | None = None, size: int = 512,
                transparent: bool = False, sketch: Image.Image | None = None,
                manager: PluginManager | None = None) -> list[Image.Image]:
    """Raw frames -> images to write, through the named post-processor (default lineart).

    ``sketch``, the input drawing, gives the pen width that ``lineart`` redraws strokes with.
    """
    from flipsketch.frames.images import array_to_images
    from flipsketch.frames.postprocess import PostprocessSettings

    if size < 8:
        raise UsageError("--size must be at least 8 pixels")
    processor = (manager or get_manager()).get("postprocessor", name)
    return processor(array_to_images(frames), PostprocessSettings(
        size=size, transparent=transparent, sketch=sketch))


def save(images: list[Image.Image], path: str | Path, fps: float = 10, force: bool = False,
         manager: PluginManager | None = None) -> Path:
    """Write ``images`` atomically; the path's suffix picks the writer."""
    from flipsketch.frames.writers import save_frames

    return save_frames(images, path, fps=fps, force=force, manager=manager)
