"""The Python API: what the CLI, the recipes and the evaluation all call.

    from flipsketch.api import SamplerSettings, load_pipeline, animate, postprocess, save

    pipe = load_pipeline("tiny")
    [clip] = animate(pipe, "a fish swimming to the right", "fish.png")
    save(postprocess(clip.frames), "fish.gif")

Stages are chosen by name and looked up in the plugin registries, so anything a plugin
registers is usable here exactly like the built-ins.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flipsketch.errors import FlipSketchError, SettingsError, UsageError
from flipsketch.plugins import (
    ALIGN_OPTIMIZERS,
    COMPOSE_MODES,
    DEFAULT_FPS,
    DEFAULT_LAMBDA,
    DEFAULT_SIZE,
    LAMBDA_RULES,
    OFF,
    STAGES,
    AlignSettings,
    PluginManager,
    get_manager,
    method_windows,
)

# torch, numpy, PIL and diffusers are imported where they are used, so that the CLI can import
# the settings below (and `--help` can start) without loading them.
if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from flipsketch.sampler.pipeline import FlipSketchPipeline, Progress

# The stages the sampler looks up by name: inverter, aligner, composer.
SAMPLER_STAGES = tuple(name for name, stage in STAGES.items() if stage.sampler)
# Documented maxima (README, `--help`). Frames: what temporal attention was ever trained on
# is far less (16 for ModelScope), and a model with frame positions has its own, lower, limit
# (`check_resources`). Size: output pixels a side; larger is upscaling a 256 px clip anyway.
MAX_FRAMES = 64
MAX_SIZE = 4096


@dataclass(frozen=True)
class SamplerChoices:
    """What the toolkit's sampler and the paper's choose where the two differ (README, "The
    paper's sampler"). Every number of Algorithm 1 (T = 25, CFG 9, tau1 = 2T/5, tau2 = 3T/5,
    lambda 0.5, M = 10, the model's resolution: 256 px for ModelScope) is the default of both.
    """

    # Frame 1 follows the sketch's own denoising trajectory (its DDIM inversion, denoised
    # with the null prompt) to the last step, so frame 1 is the user's drawing; False: it
    # starts from x_T^r and joins the guided denoising once the method's windows close.
    keep_first_frame: bool
    # Optimiser steps and learning rate per aligned timestep.
    align_iterations: int
    align_lr: float
    # The number i of frame 1 in the temporal logit scale 1 + lambda * i / 50.
    frame_index_base: int
    # What that factor multiplies: the logit to frame 1 (eq. 9) or the attention weight.
    lambda_rule: str


# The toolkit: frame 1 is the drawing (freed after the windows, the embedded model redraws it
# its own way: frame-1 stroke F-score 0.50 instead of 0.89, model card); one Adam step at 1e-2
# removes as much of L_align as the authors' 10 at 1e-3 at a tenth of the work (README,
# Benchmarks); frames numbered 1..M, as eq. 9 reads for frame 1.
TOOLKIT_SAMPLER = SamplerChoices(keep_first_frame=True, align_iterations=AlignSettings.iterations,
                                 align_lr=AlignSettings.lr, frame_index_base=1,
                                 lambda_rule="logit")
# The paper's sampler as the authors' code runs it: frame 1 starts from x_T^r only, their
# alignment optimiser (10 Adam steps at 1e-3; the paper does not print these), frames
# numbered 0..M-1 in the temporal scale.
PAPER_SAMPLER = SamplerChoices(keep_first_frame=False, align_iterations=10, align_lr=1e-3,
                               frame_index_base=0, lambda_rule="logit")


@dataclass
class SamplerSettings:
    """Every sampler option, with the paper's defaults (T = 25, M = 10, CFG 9, lambda 0.5).

    ``paper`` picks the paper's sampler instead of the toolkit's where the two differ
    (``SamplerChoices``); a field of those set here wins over either (None: the sampler's),
    so ``paper=True, lambda_=1.0`` is the paper's lambda = 1 row.
    """

    num_frames: int = 10
    num_inference_steps: int = 25
    guidance_scale: float = 9.0
    negative_prompt: str = ""
    lambda_: float = DEFAULT_LAMBDA
    tau1: int | None = None  # alignment for steps i < tau1; default 2T/5
    tau2: int | None = None  # composition for steps i <= tau2; default 3T/5
    compose: str = "both"
    align: bool = True
    paper: bool = False  # PAPER_SAMPLER's choices instead of TOOLKIT_SAMPLER's
    # None: the sampler's (see SamplerChoices): True for the toolkit, False for the paper.
    keep_first_frame: bool | None = None
    align_iterations: int | None = None  # None: 1, or 10 with paper
    align_lr: float | None = None  # None: 1e-2, or 1e-3 with paper
    lambda_rule: str | None = None  # None: the sampler's, "logit" (eq. 9); or "weight"
    align_optimizer: str = AlignSettings.optimizer
    align_checkpointing: bool | None = AlignSettings.checkpointing  # None: for large UNets
    seed: int = 0
    samples: int = 1

    def validate(self) -> None:
        """Raise a ``SettingsError`` naming the field of the first value that cannot work.

        The problem is worded without any front end's name for the field, so that the CLI can
        put its flag in front of it and a recipe its key.
        """
        steps = self.num_inference_steps
        tau1, tau2 = method_windows(steps, self.tau1, self.tau2)
        tau2_default = f" (its default is 3T/5 = {tau2})" if self.tau2 is None else ""
        checks = [
            ("num_frames", self.num_frames >= 2, "must be at least 2"),
            ("num_frames", self.num_frames <= MAX_FRAMES, f"must be at most {MAX_FRAMES}"),
            ("num_inference_steps", steps >= 1, "must be at least 1"),
            ("guidance_scale", math.isfinite(self.guidance_scale),
             "must be a number, not NaN or infinity (the paper uses 9)"),
            ("guidance_scale", self.guidance_scale >= 0, "must be 0 or more"),
            ("lambda_", 0 <= self.lambda_ <= 1,
             f"must be between 0 and 1 (got {self.lambda_:g}): 1 keeps the drawing, 0 moves "
             "the most"),
            ("samples", self.samples >= 1, "must be at least 1"),
            ("compose", self.compose in COMPOSE_MODES,
             f"must be one of {', '.join(COMPOSE_MODES)}, not '{self.compose}'"),
            ("align_iterations", self.align_iterations is None or self.align_iterations >= 1,
             "must be at least 1"),
            ("align_lr", self.align_lr is None or self.align_lr > 0, "must be positive"),
            ("lambda_rule", self.lambda_rule in (None, *LAMBDA_RULES),
             f"must be {' or '.join(LAMBDA_RULES)}, not '{self.lambda_rule}'"),
            ("align_optimizer", self.align_optimizer in ALIGN_OPTIMIZERS,
             f"must be {' or '.join(ALIGN_OPTIMIZERS)}, not '{self.align_optimizer}'"),
            ("tau1", self.tau1 is None or 0 <= self.tau1 <= steps,
             f"must be between 0 and the number of steps ({steps})"),
            ("tau2", self.tau2 is None or -1 <= self.tau2 <= steps,
             f"must be between -1 and the number of steps ({steps})"),
            # Only when both stages run: with one off, its window means nothing.
            ("tau2", not (self.align and self.compose != OFF) or tau2 >= tau1 - 1,
             f"must be at least tau1 - 1 ({tau1 - 1}){tau2_default}: composition (steps "
             "i <= tau2) covers the alignment steps (i < tau1)"),
        ]
        for name, ok, problem in checks:
            if not ok:
                raise SettingsError(name, problem)

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.samples))

    @property
    def choices(self) -> SamplerChoices:
        """What runs where the samplers differ: the chosen sampler's (``paper``), with the
        fields set here put in."""
        chosen = PAPER_SAMPLER if self.paper else TOOLKIT_SAMPLER
        given = {name: getattr(self, name) for name in ("keep_first_frame", "align_iterations",
                                                        "align_lr", "lambda_rule")}
        return replace(chosen, **{k: v for k, v in given.items() if v is not None})


@dataclass
class Animation:
    frames: np.ndarray  # (F, H, W) float32 in [0, 1], 1 = white, at the model's resolution
    seed: int
    prompt: str
    timings: dict[str, float] = field(default_factory=dict)
    align_losses: list[list[float]] = field(default_factory=list)
    inversion_cached: bool | None = None  # the drawing's inversion came from the cache


def check_prompt(prompt: str) -> None:
    """Refuse a prompt that is empty or holds control characters.

    Tabs and line breaks are white space like any other. Other control characters (a bell,
    an escape sequence, a NUL) come from pasting terminal output, never from a description;
    dropping them silently would change the prompt behind the user's back, so the line names
    the first one and where it is. Any other Unicode (emoji, right-to-left scripts) is text.
    """
    if not prompt.strip():
        raise UsageError("the prompt is empty; describe the motion, e.g. 'a fish swimming'")
    for index, char in enumerate(prompt):
        if char not in "\t\n\r" and unicodedata.category(char) == "Cc":
            raise UsageError(f"the prompt holds the control character U+{ord(char):04X} at "
                             f"character {index + 1}; remove it (a paste from a terminal?)")


def check_size(size: int) -> None:
    """Refuse output frames under 8 pixels, too small to show a stroke, or over ``MAX_SIZE``;
    front ends call it before sampling, so the mistake costs nothing."""
    if size < 8:
        raise SettingsError("size", "must be at least 8 pixels")
    if size > MAX_SIZE:
        raise SettingsError("size", f"must be at most {MAX_SIZE} pixels")


# Settings fields (``SamplerSettings``, ``LoraSettings``) whose flag is not the field's name;
# any other field ``align_lr`` is ``--align-lr``. Every front end names a field this way in
# its messages (the command line, the web page's form, ``message``).
FLAGS = {"num_frames": "--frames", "num_inference_steps": "--steps",
         "guidance_scale": "--guidance", "batch_size": "--batch"}


def flag_for(field: str) -> str:
    """The command-line flag that sets the settings field ``field`` (``lambda_``: --lambda)."""
    return FLAGS.get(field, "--" + field.rstrip("_").replace("_", "-"))


def message(exc: FlipSketchError) -> str:
    """The error's line as the command line says it: a settings field by its flag.

    The one helper a front end (the command line, a plugin's command or server) uses to turn
    a ``FlipSketchError`` into the line it prints or returns.
    """
    if isinstance(exc, SettingsError):
        return f"{flag_for(exc.field)} {exc.problem}"
    return str(exc)


def lambda_from(lambda_: float | None, motion: float | None) -> float:
    """``--lambda``, or ``--motion`` (the demo's slider, 1 - lambda), or the default; a bad
    ``--motion`` is named as typed rather than as the lambda it becomes."""
    if lambda_ is not None and motion is not None:
        raise UsageError("pass either --lambda or --motion (= 1 - lambda), not both")
    if motion is None:
        return DEFAULT_LAMBDA if lambda_ is None else lambda_
    if not 0 <= motion <= 1:
        raise UsageError(f"--motion must be between 0 and 1 (got {motion:g}); 0 keeps the "
                         "drawing, 1 moves most")
    return 1 - motion


def sampler_stages(settings: SamplerSettings, inverter: str | None = None,
                   aligner: str | None = None,
                   composer: str | None = None) -> tuple[SamplerSettings, dict[str, str | None]]:
    """The one rule for switching a sampler stage off, shared by every front end.

    A stage is switched off by naming it "none" (``--aligner none``, ``composer: none`` in a
    recipe, ``animate(..., aligner="none")``); the settings record it as ``align=False`` and
    ``compose="none"``, which switch the same stages off. Returns the settings with the names
    folded in and the names of the stages that run (None: the registry's default), so callers
    look up, and check, only stages that will run.
    """
    if aligner == OFF:
        settings = replace(settings, align=False)
    if composer == OFF:
        settings = replace(settings, compose=OFF)
    names = {"inverter": inverter}
    if settings.align:
        names["aligner"] = aligner
    if settings.compose != OFF:
        names["composer"] = composer
    return settings, names


def load_pipeline(model: str | None = None, device: str | None = None,
                  dtype: str | None = None, allow_pickle: bool = False,
                  loras: list[str] | tuple[str, ...] = (), unet: str | None = None,
                  backbone: str | None = None,
                  manager: PluginManager | None = None) -> FlipSketchPipeline:
    """Load ``model`` with the named backbone, then apply the LoRAs.

    The backbone is chosen first and given ``model`` as is: the default ``modelscope`` reads
    presets, folders and hub ids, another backbone may accept names of its own. Without
    ``model``, the default model (``FLIPSKETCH_MODEL``, else ``flipsketch models default``,
    else ``tiny``).
    """
    from flipsketch.models.lora import apply_loras, parse_lora
    from flipsketch.models.presets import default_model

    if model is None:
        model = default_model()

    manager = manager or get_manager()
    loader = manager.get("backbone", backbone)
    pipe = loader(model, unet=unet, device=device, dtype=dtype, allow_pickle=allow_pickle)
    if loras:
        apply_loras(pipe.unet, [parse_lora(value) for value in loras], allow_pickle)
    return pipe


def check_frame_limit(settings: SamplerSettings, limit: int | None, model: str) -> None:
    """Refuse more frames than the model's temporal layers have positions for (None: no
    limit, as in ModelScope); read from the config before loading and from the UNet after."""
    if limit and settings.num_frames > limit:
        raise SettingsError("num_frames", f"must be at most {limit} with {model}: its frame "
                                          f"positions cover {limit} frames")


def check_resources(model: str | None, settings: SamplerSettings, size: int = DEFAULT_SIZE, *,
                    device: str | None = None, dtype: str | None = None,
                    unet: str | None = None, backbone: str | None = None) -> int | None:
    """Refuse, before the model loads, a request this model or device cannot take; return
    the estimated peak memory in bytes (``models.footprint.estimate_peak_bytes``).

    Two things are known from the model's small files alone: how many frames its UNet has
    frame positions for, and its sizes, from which the memory of ``settings.num_frames`` x
    ``settings.samples`` at ``size`` px follows; the device says what it has free. A model
    whose files are not on this machine yet (a hub model before its download) or that
    another backbone loads is not checked (None): loading it says what is wrong.
    """
    from flipsketch.errors import ModelLoadError
    from flipsketch.models.footprint import available_bytes, estimate_peak_bytes, read_footprint
    from flipsketch.models.presets import default_model, resolve_model
    from flipsketch.models.store import locate

    if (backbone or STAGES["backbone"].default) != "modelscope":
        return None
    model = model or default_model()
    spec = resolve_model(model, unet=unet)
    try:
        parts = locate(model, spec, allow_pickle=True, download=False).parts
    except ModelLoadError:
        return None
    footprint = read_footprint(parts, model)
    check_frame_limit(settings, footprint.frame_positions, f"model '{model}'")
    from flipsketch.devices import resolve_device, resolve_dtype

    target = resolve_device(device)
    need = estimate_peak_bytes(footprint, frames=settings.num_frames, samples=settings.samples,
                               size=size, guidance=settings.guidance_scale > 1,
                               dtype_bytes=resolve_dtype(dtype, target).itemsize)
    free = available_bytes(str(target))
    if free is not None and need > free:
        # Worded without flags: batch rows and the web page relay it too.
        raise UsageError(f"{size} px with {settings.num_frames} frames x {settings.samples} "
                         f"samples needs about {_gib(need)} on {target} ({_gib(free)} "
                         "available); lower the size, the frames or the samples")
    return need


def _gib(count: int) -> str:
    gib = count / 2**30
    return f"{gib:.0f} GiB" if gib >= 10 else f"{gib:.1f} GiB"


def prepare_sketch(sketch: Image.Image | str | Path, size: int) -> torch.Tensor:
    """Any sketch image or path -> (size, size) grey tensor in [0, 1] (padded, never stretched)."""
    import torch

    from flipsketch.frames.images import (
        check_drawing,
        images_to_array,
        load_sketch,
        to_grey_square,
    )

    image = load_sketch(sketch) if isinstance(sketch, (str, Path)) else sketch
    check_drawing(image, f"sketch '{sketch}'" if isinstance(sketch, (str, Path)) else "sketch")
    return torch.from_numpy(images_to_array([to_grey_square(image, size)])[0])


def animate(pipe: FlipSketchPipeline, prompt: str,
            sketch: Image.Image | str | Path | None = None,
            settings: SamplerSettings | None = None, *, inverter: str | None = None,
            aligner: str | None = None, composer: str | None = None,
            progress: Progress | None = None, cache: bool | Path = True,
            manager: PluginManager | None = None) -> list[Animation]:
    """Sample ``settings.samples`` animations; ``sketch`` None is text-only generation.

    ``inverter``, ``aligner`` and ``composer`` name plugin stages (None: the default);
    "none" switches the aligner or the composer off (``sampler_stages``). ``cache``: reuse
    the drawing's inversion from earlier runs (``sampler.inversion_cache``; a folder: keep
    it there instead of the user cache folder); False neither reads nor writes it.
    """
    settings, names = sampler_stages(settings or SamplerSettings(), inverter, aligner, composer)
    settings.validate()
    check_prompt(prompt)
    manager = manager or get_manager()
    stages = {stage: manager.get(stage, names[stage]) if stage in names else None
              for stage in SAMPLER_STAGES}
    choices = settings.choices  # the toolkit's or the paper's, with explicit values put in
    align_settings = AlignSettings(choices.align_iterations, choices.align_lr,
                                   settings.align_optimizer, settings.align_checkpointing)
    from flipsketch.models.frame_positions import CONFIG_KEY

    check_frame_limit(settings, pipe.unet.config.get(CONFIG_KEY), "this model")
    image = None if sketch is None else prepare_sketch(sketch, pipe.model_resolution)
    cached = None
    if cache is not False and image is not None:
        from flipsketch.sampler.inversion_cache import CachedInverter

        cached = stages["inverter"] = CachedInverter(
            stages["inverter"], names["inverter"] or STAGES["inverter"].default,
            None if cache is True else Path(cache))
    output = pipe(
        prompt, image, num_frames=settings.num_frames,
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale, negative_prompt=settings.negative_prompt,
        seeds=settings.seeds, tau1=settings.tau1, tau2=settings.tau2,
        lambda_=settings.lambda_, compose=settings.compose,
        keep_first_frame=choices.keep_first_frame, frame_index_base=choices.frame_index_base,
        lambda_rule=choices.lambda_rule,
        align_settings=align_settings,
        progress=progress, **stages,
    )
    return [Animation(frames=output.frames[k].numpy(), seed=seed, prompt=prompt,
                      timings=output.timings, align_losses=output.align_losses,
                      inversion_cached=cached.hit if cached is not None else None)
            for k, seed in enumerate(output.seeds)]


def postprocess(frames: np.ndarray, name: str | None = None, size: int = DEFAULT_SIZE,
                transparent: bool = False, sketch: Image.Image | None = None,
                manager: PluginManager | None = None) -> list[Image.Image]:
    """Raw frames -> images to write, through the named post-processor (default lineart).

    ``sketch``, the input drawing, gives the pen width that ``lineart`` redraws strokes with.
    """
    from flipsketch.frames.images import array_to_images
    from flipsketch.frames.postprocess import PostprocessSettings

    check_size(size)
    processor = (manager or get_manager()).get("postprocessor", name)
    return processor(array_to_images(frames), PostprocessSettings(
        size=size, transparent=transparent, sketch=sketch))


def save(images: list[Image.Image], path: str | Path, fps: float = DEFAULT_FPS,
         force: bool = False,
         writer: str | None = None, manager: PluginManager | None = None) -> Path:
    """Write ``images`` atomically; the path's suffix picks the writer unless one is named."""
    from flipsketch.frames.writers import save_frames

    return save_frames(images, path, fps=fps, force=force, writer=writer, manager=manager)


# What a plugin needs beyond the functions above, so that a plugin imports flipsketch only
# through ``flipsketch.api``, ``flipsketch.plugins`` and ``flipsketch.errors`` (the bundled
# ones are held to it: tests/test_layers.py) and never depends on where a helper lives inside
# the package. Each loads on first use (PEP 562): most of them import torch, and the command
# line imports this module without it.
PLUGIN_EXPORTS = {
    "FlipSketchPipeline": "flipsketch.sampler.pipeline",  # what a backbone returns
    "resolve_device": "flipsketch.devices",
    "resolve_dtype": "flipsketch.devices",
    "default_model": "flipsketch.models.presets",  # the model when none is named
    "ModelSpec": "flipsketch.models.presets",
    "locate": "flipsketch.models.store",  # a model's parts on disk, downloading them once
    "hub_snapshot": "flipsketch.models.store",
    "weights_format": "flipsketch.models.backbone",  # safetensors, or pickles if allowed
    "check_drawing": "flipsketch.frames.images",  # the checks on a drawing
    "decode_sketch": "flipsketch.frames.images",  # uploaded bytes -> a drawing
    "INK_THRESHOLD": "flipsketch.frames.images",  # grey below this is ink
    "on_white": "flipsketch.frames.writers",  # a transparent frame flattened on paper
    "FOLDER_WRITER": "flipsketch.frames.writers",  # the writer of a folder of PNGs
}


def __getattr__(name: str) -> Any:
    if name in PLUGIN_EXPORTS:
        import importlib

        return getattr(importlib.import_module(PLUGIN_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
