"""What a plugin implements and what it is given: one type per stage, in one module.

Each stage's implementation is a callable or object of the type named in its row of
``flipsketch.plugins.STAGES``. The callables are ``typing.Protocol`` classes, so an
implementation is any function with the same parameters (no base class to inherit); the
settings objects passed to them and the two stages whose implementations are records
(``Writer``, ``StepType``) are small dataclasses defined here as well, so that a plugin
imports everything from ``flipsketch.plugins``::

    from flipsketch.plugins import PostprocessSettings, Writer, hookimpl

Tensor shapes are written (batch, channels, frames, height, width) with lowercase h, w for
latent pixels and uppercase H, W for image pixels; M is the number of frames of a clip.

This module imports nothing heavy at run time (torch, diffusers, PIL and numpy are named only
for type checkers), so the plugin layer stays the bottom of the package and the CLI starts
quickly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flipsketch.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from diffusers import UNet3DConditionModel
    from PIL import Image

    from flipsketch.recipes.runner import StepContext
    from flipsketch.recipes.schema import Step
    from flipsketch.sampler.pipeline import FlipSketchPipeline


# -- backbone ----------------------------------------------------------------------------------
class Backbone(Protocol):
    """Loads a model: ``--model`` as the user typed it -> a ``FlipSketchPipeline``.

    The model string is passed unresolved, so a backbone decides which names it accepts: the
    built-in ``modelscope`` reads presets, diffusers folders and hub ids
    (``flipsketch.models.presets.resolve_model``), another backbone may take ids of its own
    such as ``"mybackend:thing"``. Every keyword is always passed:

    - ``unet``: a fine-tune whose UNet replaces the model's (``--unet``), or None;
    - ``device``/``dtype``: as typed (``"cuda:1"``, ``"bf16"``), None for the best choice;
    - ``allow_pickle``: whether weights that run code when loaded may be read.

    The pipeline must be a ``FlipSketchPipeline`` (or subclass) with frozen, eval-mode modules
    on the device. Failures the user can fix raise ``flipsketch.errors.UsageError`` (a bad
    name) or ``ModelLoadError`` (missing weights), each with a one-line fix.
    """

    def __call__(self, model: str, *, unet: str | None, device: str | None, dtype: str | None,
                 allow_pickle: bool) -> FlipSketchPipeline: ...


# -- inverter ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SketchEncoding:
    """How the drawing becomes the latent an inverter is given.

    The defaults are the paper's reading: the VAE sees the drawing in [-1, 1], the range it
    was trained on, its posterior's mode (deterministic) is taken, one frame. The authors'
    demo differs in all three, and each is offered as an inverter of its own (``ddim-demo``
    and friends, ``flipsketch.sampler.inversion``; docs/evaluation.md measures them).
    """

    # Feed the VAE the [0, 1] tensor (ink 0, paper 1), as the authors' demo did.
    unit_range: bool = False
    # A sample of the posterior instead of its mode, drawn from a generator seeded with
    # ``sample_seed`` (fixed, so the inversion still depends on the drawing alone and stays
    # cacheable; the demo drew from the global generator).
    sample: bool = False
    sample_seed: int = 0
    # Encode this many copies of the drawing as one clip (the demo: 5); the inverter inverts
    # the clip and the sampler averages its frames into one reference noise.
    copies: int = 1


class Inverter(Protocol):
    """The sketch's latent -> the reference noise x_T^r it is sampled from (paper Sec. 4.1).

    Called once per run, before sampling:

    - ``latent``: (1, c, F, h, w), the encoded drawing: F = 1 unless the inverter asks for
      copies;
    - ``null_embeds``: (1, tokens, d), the empty prompt's text embeddings;
    - ``timesteps``: (T,) the timesteps the sampler will walk down, highest first (an
      inverter walks them up).

    Returns noise at ``timesteps[0]`` with ``latent``'s shape; the sampler averages over the
    frame axis, so an inverter may return several frames.

    An inverter may carry an ``encoding`` attribute, a ``SketchEncoding``, saying how the
    drawing is to be encoded for it (``sketch_encoding`` reads it); without one, the default.
    """

    def __call__(self, pipe: FlipSketchPipeline, latent: torch.Tensor,
                 null_embeds: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor: ...


def sketch_encoding(inverter: Any) -> SketchEncoding:
    """How ``inverter`` wants the drawing encoded: its ``encoding``, else the default."""
    encoding = getattr(inverter, "encoding", None)
    return encoding if isinstance(encoding, SketchEncoding) else SketchEncoding()


# -- aligner -----------------------------------------------------------------------------------
def method_windows(steps: int, tau1: int | None = None,
                   tau2: int | None = None) -> tuple[int, int]:
    """(tau1, tau2): alignment runs while i < tau1, composition while i <= tau2; Algorithm 1's
    2T/5 and 3T/5 where not given. One place, read by the settings' checks and the sampler."""
    return (2 * steps // 5 if tau1 is None else tau1, 3 * steps // 5 if tau2 is None else tau2)


# The optimisers the built-in aligner can take frames 2..M with (``--align-optimizer``).
ALIGN_OPTIMIZERS = ("adam", "sgd")
# The paper's balance of fidelity (1: keep the drawing) and motion (0: move freely).
DEFAULT_LAMBDA = 0.5
# Which attention composition runs: C^S and C^T, one of them, or none (composer switched off).
COMPOSE_MODES = ("both", "spatial", "temporal", "none")
# How lambda's factor acts on the temporal attention to frame 1 (``CompositionSettings``).
LAMBDA_RULES = ("logit", "weight")
# Eq. 9's constant: query frame i's factor towards frame 1 is 1 + lambda * i * scale. 2e-2 is
# the paper's, set for ModelScope, whose temporal logits are large; a multiplicative factor does
# less on a model with small logits (the embedded one's are ~1), so a UNet may record the
# constant that makes lambda's range do the same there, under this key of its config.json.
PAPER_LAMBDA_SCALE = 0.02
LAMBDA_SCALE_KEY = "lambda_scale"
# Likewise the rule (``LAMBDA_RULES``) that gives lambda its range on that model: eq. 9's
# "logit" unless the config records another under this key.
LAMBDA_RULE_KEY = "lambda_rule"


@dataclass
class AlignSettings:
    """How hard an aligner works per aligned timestep (``--align-*`` options)."""

    # The authors' demo took 10 Adam steps at lr 1e-3 per aligned timestep, about 8x the cost
    # of plain sampling, and shipped with alignment off. One Adam step at 1e-2 moves the latents
    # about as far (Adam's first step is lr * sign(gradient)); benchmarks/bench_sampler.py
    # reports how much of L_align each removes.
    iterations: int = 1
    lr: float = 1e-2
    optimizer: str = "adam"  # one of ALIGN_OPTIMIZERS
    # Recompute activations in the backward pass instead of storing them. None = when the
    # UNet is large (over sampler.alignment.CHECKPOINT_ABOVE parameters): ModelScope's 1.4 B
    # UNet needs it to stay near plain sampling's peak memory, while the embedded 11 M one
    # runs twice as fast without and its activations are a few MB.
    checkpointing: bool | None = None


class Aligner(Protocol):
    """Moves frames 2..M towards the reference (paper Sec. 4.2). ``"none"`` skips the stage.

    Called at every step i < tau_1 with:

    - ``latents``: (b, c, M, h, w) joint latents of the b samples; frame 0 is the reference;
    - ``ref_latent``: (1, c, 1, h, w) the reference latent at this step;
    - ``t``: the current timestep (0-d tensor);
    - ``cond_embeds``: (b, tokens, d) the input prompt's embeddings;
    - ``target``: (1, c, 1, h, w) the model output for the reference alone, null prompt.

    Returns latents of the same shape with frame 0 untouched, and the alignment loss of each
    iteration (reported, not used): a list of floats or a 1-D tensor, which may stay on the
    model's device (the sampler reads it on the host once, at the end).
    """

    def __call__(self, pipe: FlipSketchPipeline, latents: torch.Tensor,
                 ref_latent: torch.Tensor, t: torch.Tensor, cond_embeds: torch.Tensor,
                 target: torch.Tensor, settings: AlignSettings
                 ) -> tuple[torch.Tensor, Sequence[float] | torch.Tensor]: ...


# -- composer ----------------------------------------------------------------------------------
@dataclass
class CompositionSettings:
    """Which attention layers a composer steers, and how strongly (``--lambda``, ``--compose``)."""

    lambda_: float = DEFAULT_LAMBDA  # fidelity to the drawing vs motion
    spatial: bool = True
    temporal: bool = True
    # The number i of frame 1 in the temporal logit scale 1 + lambda * i / 50 (the next frames
    # count on from it): 1, frames 1..M, the toolkit's reading of the paper; 0, frames 0..M-1,
    # the authors' code (frame 1 unscaled, every other factor lambda / 50 smaller).
    frame_index_base: int = 1
    # How the factor 1 + lambda * i / 50 acts on query frame i's attention to frame 1
    # (``LAMBDA_RULES``): "logit" multiplies the logit (paper eq. 9, the authors' code), which
    # lowers the attention wherever the logit is negative; "weight" multiplies the attention
    # weight before the softmax renormalises, which raises it whatever the logit's sign.
    lambda_rule: str = "logit"
    # The scale in 1 + lambda * i * scale (``PAPER_LAMBDA_SCALE``: eq. 9's 1/50).
    lambda_scale: float = PAPER_LAMBDA_SCALE

    @classmethod
    def for_mode(cls, mode: str, lambda_: float = DEFAULT_LAMBDA, frame_index_base: int = 1,
                 lambda_rule: str = "logit",
                 lambda_scale: float = PAPER_LAMBDA_SCALE) -> CompositionSettings:
        """Settings for a ``--compose`` mode of ``COMPOSE_MODES`` other than "none"."""
        return cls(lambda_=lambda_, spatial=mode in ("both", "spatial"),
                   temporal=mode in ("both", "temporal"), frame_index_base=frame_index_base,
                   lambda_rule=lambda_rule, lambda_scale=lambda_scale)


class Composition(Protocol):
    """What a composer installed on a UNet; the sampler drives it through one run.

    ``flipsketch.sampler.attention.Composition`` is the built-in one. It also has
    ``in_one_call(step, num_frames, cond_rows)``, which wraps a step whose reference and joint
    passes share one UNet call (``flipsketch.sampler.clips``); a composition without it gets a
    call per pass, ``capture`` then ``compose``.
    """

    def capture(self) -> AbstractContextManager[None]:
        """Wraps each reference pass eps([x_t^r]^N, t, P_null): record what compose needs."""
        ...

    def compose(self, step: int, num_frames: int, cond_rows: slice
                ) -> AbstractContextManager[None]:
        """Wraps the joint pass of DDIM step ``step`` (0-based) over (b, c, ``num_frames``, h,
        w) latents; ``cond_rows`` is the slice of its batch that is prompt-conditional."""
        ...

    def remove(self) -> None:
        """Puts the UNet back as it was; called when the run ends, also on error."""
        ...


class Composer(Protocol):
    """Installs attention composition on a UNet (paper Sec. 4.3). ``"none"`` skips the stage.

    Called once per run with a sketch, before the first step; the ``Composition`` it returns
    is then used for the steps i <= tau_2 and removed at the end.
    """

    def __call__(self, unet: UNet3DConditionModel,
                 settings: CompositionSettings) -> Composition: ...


# -- post-processor ----------------------------------------------------------------------------
DEFAULT_SIZE = 512  # output pixels, square: what a user sees without asking


@dataclass
class PostprocessSettings:
    """How frames leave the pipeline: square side in pixels, and paper white or transparent."""

    size: int = DEFAULT_SIZE
    transparent: bool = False
    # The input drawing, None for a text-only clip: ``lineart`` draws at its pen width.
    sketch: Image.Image | None = None
    # Pen width in output pixels for ``lineart``; None: the sketch's, measured at the output
    # size, or without a sketch DEFAULT_STROKE_WIDTH scaled to the output size.
    stroke_width: float | None = None

    def __post_init__(self) -> None:
        if self.size < 1:
            raise UsageError(f"output size must be at least 1 pixel, got {self.size}; "
                             f"pass a positive size such as 512")


class PostProcessor(Protocol):
    """Decoded frames -> the images a writer saves. Called once per clip.

    ``frames`` are grey ``PIL.Image`` (mode "L", the model's resolution); the result may have
    any mode and is ``settings.size`` pixels square (RGBA when ``settings.transparent``).
    """

    def __call__(self, frames: list[Image.Image],
                 settings: PostprocessSettings) -> list[Image.Image]: ...


# -- writer ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Writer:
    """An output format: the suffixes it claims and its encoder.

    ``folder``: the output is a folder (PNG frames, which claims no suffix; SVG frames,
    named ``clip.svgs``), so an existing folder of that name is this writer's earlier output
    rather than the user's folder to write PNG frames into.

    ``write(frames, path, fps)`` writes to exactly ``path``, which does not exist yet and ends
    with one of ``suffixes`` (for folder writers it has no suffix and the writer creates it);
    moving the result into place atomically is the caller's job. The output name picks the
    writer: the longest claimed suffix wins (".sheet.png" beats ".png"), and of writers
    claiming the same suffix the first registered wins; ``flipsketch plugins`` lists such
    clashes.
    """

    name: str
    suffixes: tuple[str, ...]
    write: Callable[[list[Image.Image], Path, float], None]
    folder: bool = False


# -- interpolator ------------------------------------------------------------------------------
class Interpolator(Protocol):
    """More frames per second without sampling (the recipe ``interpolate`` step).

    ``n`` frames (PIL images of one size) become ``(n - 1) * factor + 1``: the originals stay
    at indices ``i * factor`` and ``factor - 1`` new frames go between each pair. A factor
    that is not a whole number >= 1 raises ``UsageError``.
    """

    def __call__(self, frames: list[Image.Image], factor: int) -> list[Image.Image]: ...


# -- recipe steps ------------------------------------------------------------------------------
DEFAULT_FPS = 10.0  # the paper's GIFs


@dataclass
class Clip:
    """Frames passed from step to step: (F, H, W) grey or (F, H, W, 3) RGB, float32 in [0, 1]
    with 1 = white, and the frame rate they are meant to play at."""

    frames: np.ndarray
    fps: float = DEFAULT_FPS


class StepError(Exception):
    """Raised by a step type's ``check`` about one of the step's keys (None: the whole step)."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Field:
    """One key of a step type.

    ``type`` is ``str``, ``int``, ``float`` (ints accepted), ``bool``, ``list[str]`` or
    ``list[int]``. ``kind`` says how the value is resolved: ``file`` (a path relative to the
    recipe, hashed by content for the cache), ``output`` (a path inside OUTDIR), ``step`` (the
    name of an earlier step that makes frames), ``model`` (a hub id, or a folder relative to the
    recipe) or ``stage:NAME`` (an implementation registered for plugin stage NAME). ``check``
    returns what is wrong with a value of the right type, or None.
    """

    type: Any
    required: bool = False
    default: Any = None
    kind: str = "value"
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class StepType:
    """A kind of recipe step (``type:`` in a recipe), registered with ``register_recipe_steps``.

    ``run(ctx, step)`` gets the run's ``flipsketch.recipes.runner.StepContext`` (the plugin
    manager, the frames of the steps it reads, the loaded models) and the validated
    ``flipsketch.recipes.schema.Step``; it returns the frames it made, one ``Clip`` per
    sample, or None for a step that only writes files (one with ``output`` fields). A
    ``sampler`` step also takes every sampler option (the ``SamplerSettings`` fields and the
    names of the stages a run samples with); its ``defaults`` override the recipe's defaults
    for this type. ``check(step)`` may reject combinations of keys by raising ``StepError``.
    """

    run: Callable[[StepContext, Step], list[Clip] | None]
    fields: dict[str, Field]
    description: str = ""
    sampler: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    check: Callable[[Step], None] | None = None

    @property
    def makes_frames(self) -> bool:
        return not any(f.kind == "output" for f in self.fields.values())
