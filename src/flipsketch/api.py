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
from typing import TYPE_CHECKING, Any

from flipsketch.errors import FlipSketchError, SettingsError, UsageError
from flipsketch.plugins import (  # noqa: F401  (OFF and DEFAULT_LAMBDA: the API's too)
    DEFAULT_FPS,
    DEFAULT_LAMBDA,
    DEFAULT_SIZE,
    OFF,
    STAGES,
    AlignSettings,
    PluginManager,
    get_manager,
)
from flipsketch.preflight import (  # noqa: F401  (the API's too)
    Request,
    check_prompt,
    check_request,
    check_size,
    lambda_from,
    sampler_stages,
)
from flipsketch.settings import (  # noqa: F401  (the settings are the API's too)
    COMPOSE_MODES,
    FALSE,
    MAX_FRAMES,
    MAX_SIZE,
    OPTIONS,
    PAPER_SAMPLER,
    TOOLKIT_SAMPLER,
    TRUE,
    Option,
    OutputSettings,
    SamplerChoices,
    SamplerSettings,
    describe,
    find_option,
    flag_for,
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
@dataclass
class Animation:
    frames: np.ndarray  # (F, H, W) float32 in [0, 1], 1 = white, at the model's resolution
    seed: int
    prompt: str
    timings: dict[str, float] = field(default_factory=dict)
    align_losses: list[list[float]] = field(default_factory=list)
    inversion_cached: bool | None = None  # the drawing's inversion came from the cache


def message(exc: FlipSketchError) -> str:
    """The error's line as the command line says it: a settings field by its flag.

    The one helper a front end (the command line, a plugin's command or server) uses to turn
    a ``FlipSketchError`` into the line it prints or returns (``settings.describe`` with
    another spelling for recipes and manifests).
    """
    return describe(exc, flag_for)


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


def animate(pipe: FlipSketchPipeline, prompt: str | Request,
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

    ``prompt`` may be a ``Request`` that ``check_request`` made (the command line's): its
    settings and stages are used as checked, not checked again.
    """
    if isinstance(prompt, Request):
        request = prompt
    else:
        settings, names = sampler_stages(settings or SamplerSettings(), inverter, aligner,
                                         composer)
        settings.validate()
        check_prompt(prompt)
        request = Request(prompt, settings, names, OutputSettings())
    prompt, settings, names = request.prompt, request.settings, request.stages
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
        lambda_rule=choices.lambda_rule, lambda_scale=choices.lambda_scale,
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
