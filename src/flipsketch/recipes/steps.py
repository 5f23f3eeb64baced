"""The built-in step types, registered through the same hook as a plugin's."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFont

from flipsketch.api import animate, postprocess
from flipsketch.errors import UsageError
from flipsketch.frames.images import (
    array_to_images,
    check_drawing,
    images_to_array,
    load_sketch,
    render_text,
    warn_unless_line_art,
)
from flipsketch.frames.writers import save_frames
from flipsketch.models.video import VideoModels, sketch_to_video
from flipsketch.plugins import DEFAULT_SIZE
from flipsketch.recipes.runner import StepContext
from flipsketch.recipes.schema import Clip, Field, Step, StepError, StepType


# -- shared by the built-in steps --------------------------------------------------------------
def _sample(ctx: StepContext, step: Step, prompt: str, sketch, settings=None,
            progress: Callable[[int, int], None] | None = None) -> list[Clip]:
    """One ``api.animate`` call with the step's settings and stages; one clip per sample."""
    report = progress or ctx.progress

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage == "sampling":  # the inversion before it is one short step
            report(done, total)

    animations = animate(ctx.pipeline(), prompt, sketch, settings or step.settings,
                         **step.stages, progress=on_progress, manager=ctx.manager)
    return [Clip(np.asarray(a.frames, np.float32)) for a in animations]


def continuation_sketch(ctx: StepContext, frames: np.ndarray) -> Image.Image:
    """The sketch a clip continues from: its last frame, binarized as a writer would show it.

    Decoded frames carry soft grey haze; binarizing keeps that haze from being inverted into
    the next clip and building up from clip to clip.
    """
    size = ctx.pipeline().model_resolution
    return postprocess(frames[-1:], name="binarize", size=size, manager=ctx.manager)[0]


def _to_images(frames: np.ndarray) -> list[Image.Image]:
    """(F, H, W) grey or (F, H, W, 3) RGB floats -> PIL images ("L" or "RGB")."""
    if frames.ndim == 3:
        return array_to_images(frames)
    pixels = np.rint(np.clip(frames, 0.0, 1.0) * 255).astype(np.uint8)  # (F, H, W, 3)
    return [Image.fromarray(frame, mode="RGB") for frame in pixels]


def _to_array(images: list[Image.Image]) -> np.ndarray:
    """The inverse of ``_to_images``."""
    if images[0].mode == "L":
        return images_to_array(images)
    return np.stack([np.asarray(im.convert("RGB")) for im in images]).astype(np.float32) / 255


def _positive(value) -> str | None:
    return None if value > 0 else f"must be positive, got {value}"


def _text(value: str) -> str | None:
    return None if value.strip() else "is empty; write some text"


def _sketch_file(path: Path) -> str | None:
    """A drawing that opens and has strokes, checked when the recipe is read (as ``animate``
    checks it before the model loads)."""
    try:
        image = load_sketch(path)
        check_drawing(image, f"sketch '{path.name}'")
    except UsageError as exc:
        return str(exc)
    warn_unless_line_art(image, f"sketch '{path.name}'")  # a photo: one line, then on
    return None


def _font_file(path: Path) -> str | None:
    try:
        ImageFont.truetype(str(path), 12)
    except OSError as exc:
        return f"cannot load font {path} ({exc}); pass a .ttf or .otf file"
    return None


# -- animate, generate, word -------------------------------------------------------------------
def _one_sketch(step: Step) -> None:
    if step.params.get("sketch") is not None and step.params.get("input") is not None:
        raise StepError("input", "give either a sketch file or an input step, not both")


def _animate(ctx: StepContext, step: Step) -> list[Clip]:
    sketch = step.params["sketch"]
    if sketch is None:
        sketch = continuation_sketch(ctx, ctx.inputs[step.params["input"]][0].frames)
    return _sample(ctx, step, step.params["prompt"], sketch)


def _check_animate(step: Step) -> None:
    _one_sketch(step)
    if step.params["sketch"] is None and step.params["input"] is None:
        raise StepError("sketch", "field required; or set input to an earlier step to start "
                                  "from its last frame")


def _generate(ctx: StepContext, step: Step) -> list[Clip]:
    return _sample(ctx, step, step.params["prompt"], None)


def _word(ctx: StepContext, step: Step) -> list[Clip]:
    sketch = render_text(step.params["text"], font=step.params["font"])
    return _sample(ctx, step, step.params["prompt"], sketch)


# -- extrapolate -------------------------------------------------------------------------------
def _check_extrapolate(step: Step) -> None:
    _one_sketch(step)
    prompts, seeds = step.params["prompts"], step.params["seeds"]
    if seeds is not None and len(seeds) != len(prompts):
        raise StepError("seeds", f"has {len(seeds)} seeds for {len(prompts)} prompts; give one "
                                 f"seed per prompt, or none to use seed, seed+1, ...")
    if step.settings.samples != 1:
        raise StepError("samples", "extrapolate continues one clip; set samples to 1")


def _extrapolate(ctx: StepContext, step: Step) -> list[Clip]:
    """One clip per prompt, each starting from the previous clip's last frame (paper Fig. 6).

    The segments are stitched with each boundary frame once: segment k+1's first frame is the
    model's redrawing of segment k's last frame, so it is dropped, and the last frame of
    segment k is the frame segment k+1 starts from.
    """
    prompts = step.params["prompts"]
    seeds = step.params["seeds"] or [step.settings.seed + k for k in range(len(prompts))]
    sketch = step.params["sketch"]
    if sketch is None and step.params["input"] is not None:
        sketch = continuation_sketch(ctx, ctx.inputs[step.params["input"]][0].frames)
    pieces: list[np.ndarray] = []
    for k, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
        def progress(done: int, total: int, k: int = k) -> None:
            ctx.progress(k * total + done, len(prompts) * total)

        settings = dataclasses.replace(step.settings, seed=seed)
        (clip,) = _sample(ctx, step, prompt, sketch, settings, progress)
        pieces.append(clip.frames if k == 0 else clip.frames[1:])
        sketch = continuation_sketch(ctx, clip.frames)
    return [Clip(np.concatenate(pieces))]


# -- interpolate -------------------------------------------------------------------------------
def _interpolate(ctx: StepContext, step: Step) -> list[Clip]:
    """Each clip at ``factor`` times the frame rate; it plays for the same time."""
    interpolator = ctx.manager.get("interpolator", step.params["interpolator"])
    factor = step.params["factor"]
    clips = ctx.inputs[step.params["input"]]
    out = []
    for i, clip in enumerate(clips):
        ctx.progress(i, len(clips))
        frames = interpolator(_to_images(clip.frames), factor)
        out.append(Clip(_to_array(frames), clip.fps * factor))
    ctx.progress(len(clips), len(clips))
    return out


# -- video -------------------------------------------------------------------------------------
def _check_video(step: Step) -> None:
    if step.params["size"] % 8:
        raise StepError("size", f"must be a multiple of 8, got {step.params['size']}; use e.g. "
                                f"512")


def _video(ctx: StepContext, step: Step) -> list[Clip]:
    """Each sketch clip as a photo-real video (paper Sec. 5.3), one video frame per frame."""
    p = step.params
    chosen = {k: p[k] for k in ("base", "motion_adapter", "controlnet") if p[k] is not None}
    pipe = ctx.video_pipeline(VideoModels(**chosen))
    out = []
    for clip in ctx.inputs[p["input"]]:
        if clip.frames.ndim != 3:
            raise UsageError(f"step '{p['input']}' made colour frames; the video step needs "
                             f"sketch frames as its input")
        sketches = postprocess(clip.frames, name="binarize", size=p["size"], manager=ctx.manager)
        frames = sketch_to_video(
            pipe, sketches, p["prompt"], negative_prompt=p["negative_prompt"],
            num_inference_steps=p["num_inference_steps"], guidance_scale=p["guidance_scale"],
            conditioning_scale=p["conditioning_scale"], size=p["size"], seed=p["seed"],
            progress=ctx.progress)
        out.append(Clip(frames, clip.fps))
    return out


# -- write -------------------------------------------------------------------------------------
def _write(ctx: StepContext, step: Step) -> None:
    """Each input clip through a writer: sketch frames post-processed (binarized by default),
    colour frames resized; one file per clip (see ``writers.numbered_paths``)."""
    p = step.params
    for clip, out in zip(ctx.inputs[p["input"]], step.outputs, strict=True):
        if clip.frames.ndim == 3:
            images = postprocess(clip.frames, name=p["postprocess"], size=p["size"],
                                 transparent=p["transparent"], manager=ctx.manager)
        else:
            images = [im.resize((p["size"], p["size"]), Image.Resampling.LANCZOS)
                      for im in _to_images(clip.frames)]
        target = ctx.outdir / out
        target.parent.mkdir(parents=True, exist_ok=True)
        # The runner has already refused to replace anything this recipe did not write.
        save_frames(images, target, fps=p["fps"] or clip.fps, force=True, manager=ctx.manager)


# -- registration ------------------------------------------------------------------------------
_PROMPT = Field(str, required=True, check=_text)
_INPUT = Field(str, required=True, kind="step")
_SKETCH = Field(str, kind="file", check=_sketch_file)

BUILTIN_STEPS: dict[str, StepType] = {
    "animate": StepType(
        _animate, {"prompt": _PROMPT, "sketch": _SKETCH, "input": Field(str, kind="step")},
        "animate a sketch file, or an earlier step's last frame, as the prompt says",
        sampler=True, check=_check_animate),
    "generate": StepType(
        _generate, {"prompt": _PROMPT},
        "a sketch animation from the prompt alone (no input sketch)", sampler=True),
    "word": StepType(
        _word, {"text": Field(str, required=True, check=_text), "prompt": _PROMPT,
                "font": Field(str, kind="file", check=_font_file)},
        "draw text as outlined letters and animate it with temporal composition off, so the "
        "letters can morph (paper Sec. 5.2)", sampler=True, defaults={"compose": "spatial"}),
    "extrapolate": StepType(
        _extrapolate, {"prompts": Field(list[str], required=True), "sketch": _SKETCH,
                       "input": Field(str, kind="step"), "seeds": Field(list[int])},
        "a long animation from a list of prompts, each clip continuing from the last frame of "
        "the one before (paper Fig. 6)", sampler=True, check=_check_extrapolate),
    "interpolate": StepType(
        _interpolate, {"input": _INPUT,
                       "factor": Field(int, default=2, check=_positive),
                       "interpolator": Field(str, default="flow", kind="stage:interpolator")},
        "multiply the frame rate by a factor with an interpolator plugin (default: flow)"),
    "video": StepType(
        _video, {
            "input": _INPUT, "prompt": _PROMPT, "negative_prompt": Field(str, default=""),
            # None: the defaults of flipsketch.models.video.VideoModels
            "base": Field(str, kind="model"), "motion_adapter": Field(str, kind="model"),
            "controlnet": Field(str, kind="model"),
            "num_inference_steps": Field(int, default=25, check=_positive),
            "guidance_scale": Field(float, default=7.5),
            "conditioning_scale": Field(float, default=1.0),
            "size": Field(int, default=DEFAULT_SIZE, check=_positive),
            "seed": Field(int, default=0),
        },
        "turn a sketch animation into a photo-real video with a scribble ControlNet and "
        "AnimateDiff (paper Sec. 5.3)", check=_check_video),
    "write": StepType(
        _write, {
            "input": _INPUT, "path": Field(str, required=True, kind="output"),
            "fps": Field(float, check=_positive),
            "postprocess": Field(str, default="binarize", kind="stage:postprocessor"),
            "size": Field(int, default=DEFAULT_SIZE, check=_positive),
            "transparent": Field(bool, default=False),
        },
        "save frames with any writer (.gif .mp4 .webp .png/.apng, a folder of PNGs, or a "
        ".contact.png contact sheet)"),
}
