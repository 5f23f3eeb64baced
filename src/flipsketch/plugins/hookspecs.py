"""The hooks a flipsketch plugin can implement.

Every stage of the sampler is looked up by name in a registry that these hooks fill. A plugin
is any module listed under the ``flipsketch`` entry-point group; it implements one or more of
the hooks below with ``@flipsketch.hookimpl``. The package's own defaults are plugins too,
registered through the same entry-point group, so a third-party implementation is a peer of
the built-in one, not a patch on top of it.

All ``register_*`` hooks share one calling convention: they are called once, when the plugin
manager first builds its registries, with a ``register(name, impl)`` callback. A hook may call
``register`` any number of times. Names are unique per stage: registering a name twice is an
error that names both plugins. Every hook's return value is ignored (so ``firstresult`` does
not apply); order between plugins does not matter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("flipsketch")
hookimpl = pluggy.HookimplMarker("flipsketch")

Register = Callable[[str, Any], None]


@hookspec
def register_backbones(register: Register) -> None:
    """Register model loaders.

    ``impl(spec: flipsketch.models.presets.ModelSpec, *, device, dtype, allow_pickle) ->
    flipsketch.sampler.pipeline.FlipSketchPipeline``. Called when a run needs a model, with the spec
    resolved from ``--model`` (preset name, local folder or hub id). The loader must raise
    ``flipsketch.errors.ModelLoadError`` with a one-line fix when weights are missing.
    Default: ``modelscope`` (diffusers-layout text-to-video folders).
    """


@hookspec
def register_inverters(register: Register) -> None:
    """Register sketch inverters: encoded sketch latent -> reference noise x_T^r.

    ``impl(pipe, latent, null_embeds, timesteps) -> Tensor``; ``latent`` is (1, c, 1, h, w)
    and the result has the same shape (the sampler averages over frames if an inverter
    returns several). Called once per run, before sampling, with the timesteps the sampler
    will walk down (the inverter walks them up). Default: ``ddim``.
    """


@hookspec
def register_aligners(register: Register) -> None:
    """Register frame aligners (paper Sec. 4.2).

    ``impl(pipe, latents, ref_latent, t, cond_embeds, target, settings) -> (latents,
    losses)``: called at every step i < tau_1 with the joint latents (b, c, M, h, w) whose
    frame 0 is the reference latent ``ref_latent`` (1, c, 1, h, w); returns latents of the
    same shape with frame 0 untouched, and the alignment loss per iteration (for reports).
    ``target`` is the model output for the reference frame alone under the null prompt;
    ``settings`` is a ``flipsketch.sampler.alignment.AlignSettings``. Default: ``gradient``; the name
    ``none`` always means "skip this stage".
    """


@hookspec
def register_composers(register: Register) -> None:
    """Register attention composers (paper Sec. 4.3).

    ``impl(unet, settings: flipsketch.sampler.attention.CompositionSettings) -> Composition``:
    called once per run to install attention processors on the UNet. The sampler then wraps
    each reference pass in the context manager ``composition.capture()`` and the following
    joint pass in ``composition.compose(step, num_frames, cond_rows)`` (``cond_rows``: the
    slice of batch entries that are conditional), and calls ``composition.remove()`` when the
    run ends, also on error. Default: ``flipsketch``; ``none`` skips the stage.
    """


@hookspec
def register_postprocessors(register: Register) -> None:
    """Register frame post-processors.

    ``impl(frames, settings) -> frames``: ``frames`` is a list of grey ``PIL.Image`` (mode
    "L", model resolution) for one clip; the result is the list of images to write (any
    mode, ``settings.size`` pixels square); ``settings.sketch`` is the input drawing (None
    for text only) and ``settings.transparent`` asks for RGBA. Called once per clip after
    decoding. Built in: ``lineart`` (the default: thinned strokes redrawn at the drawing's
    pen width), ``binarize`` (Otsu, black strokes on white) and ``raw`` (grey levels kept).
    """


@hookspec
def register_writers(register: Register) -> None:
    """Register output writers.

    ``impl`` is a ``flipsketch.frames.writers.Writer``: it has ``suffixes`` (e.g. ``(".gif",)``;
    an empty tuple means "a folder") and ``write(frames, path, fps)``. The output path's
    suffix picks the writer; the first registered writer claiming a suffix wins ties and a
    clash is reported by ``flipsketch plugins``. Writers write to the path they are given;
    atomic replacement is done by the caller.
    """


@hookspec
def register_recipe_steps(register: Register) -> None:
    """Register recipe step types (``type:`` in a recipe's ``steps``).

    ``impl`` is a ``flipsketch.recipes.StepType``. Called when a recipe is validated or run.
    """


@hookspec
def register_interpolators(register: Register) -> None:
    """Register frame interpolators used by the recipe ``interpolate`` step.

    ``impl(frames, factor) -> frames``: raises the frame rate of a clip of PIL images by an
    integer factor, keeping the original frames. Default: ``flow`` (optical flow).
    """
