"""What a sampling request may set, declared once: the settings types and their options.

Every sampler and output option is declared here, on the field it sets (``option(...)``): its
key (what a recipe, a manifest column and the web form call it, with aliases), its flag, its
help, its type and default (the field's). The command line's options of ``animate``,
``generate`` and ``batch``, the recipe and manifest keys, the web form's fields and their help
are all generated from ``OPTIONS``, so adding an option is one edit here.

``describe`` words a ``SettingsError`` in the spelling of the front end that asks (a flag, a
recipe key); ``flipsketch.preflight`` is the one check a request passes before anything loads.

Nothing here imports torch, so ``--help`` and a bad request cost nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from flipsketch.errors import FlipSketchError, SettingsError
from flipsketch.plugins import (
    ALIGN_OPTIMIZERS,
    COMPOSE_MODES,
    DEFAULT_FPS,
    DEFAULT_LAMBDA,
    DEFAULT_SIZE,
    LAMBDA_RULES,
    OFF,
    PAPER_LAMBDA_SCALE,
    AlignSettings,
    method_windows,
)

# Documented maxima (README, `--help`). Frames: what temporal attention was ever trained on
# is far less (16 for ModelScope), and a model with frame positions has its own, lower, limit
# (`api.check_resources`). Size: output pixels a side; larger is upscaling a 256 px clip.
MAX_FRAMES = 64
MAX_SIZE = 4096
# The words a text value (a CSV cell, a form field) may use for a yes/no option.
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One option as every front end spells it.

    ``flag`` is Typer's declaration ("--frames", "--keep-first-frame/--free-first-frame");
    ``key`` the recipe/manifest/form name, ``aliases`` other names accepted for it (the
    field's own name, say). ``field`` is the settings field it sets, or None for the
    command line's shorthands (``--motion``, ``--raw``, ``--no-compose``), which
    ``check_request`` folds into the fields. A boolean with one flag is a switch that sets
    the opposite of its default (``--no-align``: ``align`` False, ``--paper``: True), one
    with two sets True or False. ``given_default`` is what a front end passes
    when the option is not given, where "not given" must stay visible (``--lambda`` and
    ``--motion`` exclude each other): None, then ``default`` applies.
    """

    key: str
    flag: str
    help: str
    type: Any = str
    default: Any = None
    field: str | None = None
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    given_default: Any = "default"  # "default": ``default``

    @property
    def name(self) -> str:
        """The Python name a command's parameter has (``lambda_``, ``align_lr``)."""
        return self.field or self.key.replace("-", "_")

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a recipe, manifest or form may use for it."""
        return (self.key, *self.aliases)

    @property
    def parameter_default(self) -> Any:
        return self.default if self.given_default == "default" else self.given_default

    @property
    def flags(self) -> dict[str, Any]:
        """Each flag's name (no dashes) -> the value it sets: ``{"no-align": False}``,
        ``{"keep-first-frame": True, "free-first-frame": False}``; {} for a valued option."""
        if self.type is not bool and self.type != bool | None:
            return {}
        on, _, off = self.flag.partition("/")
        if off:
            return {on.lstrip("-"): True, off.lstrip("-"): False}
        return {on.lstrip("-"): not self.default}


def option(default: Any, flag: str, help: str, key: str | None = None, **more: Any) -> Any:
    """A settings field that is also an option (``Option``, completed from the field)."""
    return field(default=default, metadata={"option": dict(flag=flag, help=help, key=key,
                                                           **more)})


def _options_of(settings_type: type) -> list[Option]:
    hints = typing.get_type_hints(settings_type)
    found = []
    for f in dataclasses.fields(settings_type):
        declared = dict(f.metadata.get("option", {}))
        if not declared:
            continue
        key = declared.pop("key") or f.name.rstrip("_").replace("_", "-")
        aliases = tuple(dict.fromkeys(a for a in (f.name.rstrip("_"), f.name) if a != key))
        found.append(Option(key=key, type=hints[f.name], default=f.default, field=f.name,
                            aliases=(*declared.pop("aliases", ()), *aliases), **declared))
    return found


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
    # What that factor multiplies: the logit to frame 1 (eq. 9) or the attention weight, and
    # s in it, 1 + lambda * i * s; None: the model's own (``model_lambda_rule``,
    # ``model_lambda_scale``), eq. 9's where the model records none.
    lambda_rule: str | None
    lambda_scale: float | None


# The toolkit: frame 1 is the drawing (freed after the windows, the embedded model redraws it
# its own way: frame-1 stroke F-score 0.50 instead of 0.89, model card); one Adam step at 1e-2
# removes as much of L_align as the authors' 10 at 1e-3 at a tenth of the work (README,
# Benchmarks); frames numbered 1..M, as eq. 9 reads for frame 1; eq. 9's rule and constant the
# model's own (calibrated on the model, docs/witness.md).
TOOLKIT_SAMPLER = SamplerChoices(keep_first_frame=True, align_iterations=AlignSettings.iterations,
                                 align_lr=AlignSettings.lr, frame_index_base=1,
                                 lambda_rule=None, lambda_scale=None)
# The paper's sampler as the authors' code runs it: frame 1 starts from x_T^r only, their
# alignment optimiser (10 Adam steps at 1e-3; the paper does not print these), frames
# numbered 0..M-1 in the temporal scale, eq. 9's logit rule and constant 1/50 whatever the model.
PAPER_SAMPLER = SamplerChoices(keep_first_frame=False, align_iterations=10, align_lr=1e-3,
                               frame_index_base=0, lambda_rule="logit",
                               lambda_scale=PAPER_LAMBDA_SCALE)


@dataclass
class SamplerSettings:
    """Every sampler option, with the paper's defaults (T = 25, M = 10, CFG 9, lambda 0.5).

    ``paper`` picks the paper's sampler instead of the toolkit's where the two differ
    (``SamplerChoices``); a field of those set here wins over either (None: the sampler's),
    so ``paper=True, lambda_=1.0`` is the paper's lambda = 1 row.
    """

    num_frames: int = option(
        10, "--frames", f"Frames M, 2 to {MAX_FRAMES} (fewer where the model's frame "
                        "positions end: 32 for tiny).", key="frames")
    num_inference_steps: int = option(25, "--steps", "DDIM steps T.", key="steps")
    guidance_scale: float = option(9.0, "--guidance", "CFG scale.", key="guidance")
    negative_prompt: str = option("", "--negative-prompt", "Negative prompt.")
    lambda_: float = option(
        DEFAULT_LAMBDA, "--lambda", "Fidelity vs motion: higher keeps the drawing, lower moves "
                                    f"more. [default: {DEFAULT_LAMBDA:g}]", given_default=None)
    tau1: int | None = option(None, "--tau1", "Align frames for steps i < tau1. "
                                              "[default: 2T/5]")
    tau2: int | None = option(None, "--tau2", "Compose attention for steps i <= tau2. "
                                              "[default: 3T/5]")
    compose: str = option(
        "both", "--compose", f"Which attention is composed: {', '.join(COMPOSE_MODES)}. "
                             f"'{OFF}' switches the composer off, as --composer {OFF} does.")
    align: bool = option(True, "--no-align", f"Alias of --aligner {OFF}.")
    paper: bool = option(
        False, "--paper", "The paper's sampler as the authors ran it: frame 1 free after the "
                          "method's windows, their frame numbering in the temporal scale and "
                          "their alignment (10 Adam steps at 1e-3); options you give still "
                          "apply.")
    keep_first_frame: bool | None = option(
        None, "--keep-first-frame/--free-first-frame",
        "Frame 1 stays the drawing to the last step, or (free) joins the guided denoising "
        "after composition as in the paper. [default: keep; free with --paper]")
    align_iterations: int | None = option(
        None, "--align-iterations", "Optimiser steps per aligned timestep. [default: "
                                    f"{AlignSettings.iterations}; 10 with --paper]")
    align_lr: float | None = option(
        None, "--align-lr", f"Alignment learning rate. [default: {AlignSettings.lr:g}; 0.001 "
                            "with --paper]")
    lambda_rule: str | None = option(
        None, "--lambda-rule", f"What lambda scales in temporal composition: {LAMBDA_RULES[0]} "
                               f"(the logit to frame 1, paper eq. 9) or {LAMBDA_RULES[1]} (its "
                               "attention weight). [default: the model's own (logit, eq. 9's, "
                               "for ModelScope); logit with --paper]")
    lambda_scale: float | None = option(
        None, "--lambda-scale", "s in temporal composition's factor 1 + lambda * i * s towards "
                                "frame 1. [default: the model's own (0.02, eq. 9's, for "
                                "ModelScope); 0.02 with --paper]")
    align_optimizer: str = option(AlignSettings.optimizer, "--align-optimizer",
                                  f"{' or '.join(ALIGN_OPTIMIZERS)}.")
    align_checkpointing: bool | None = option(
        AlignSettings.checkpointing, "--align-checkpointing/--no-align-checkpointing",
        "Recompute activations during alignment to save memory. Default: only for UNets over "
        "100 M parameters.")
    seed: int = option(0, "--seed", "Seed of the first sample.")
    samples: int = option(
        1, "--samples", "K samples with seeds seed..seed+K-1, sampled together; with K > 1 "
                        "every output is numbered, <name>-1 ... <name>-K (a folder too).")

    def validate(self) -> None:
        """Raise a ``SettingsError`` naming the field of the first value that cannot work.

        The problem is worded without any front end's name for the field (``describe`` puts
        the front end's in front of it).
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
            ("lambda_scale", self.lambda_scale is None or self.lambda_scale > 0,
             "must be positive"),
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
                                                        "align_lr", "lambda_rule",
                                                        "lambda_scale")}
        return replace(chosen, **{k: v for k, v in given.items() if v is not None})


@dataclass
class OutputSettings:
    """How the frames become pictures and a file."""

    size: int = option(DEFAULT_SIZE, "--size", f"Output pixels (square), 8 to {MAX_SIZE}.")
    fps: float = option(float(DEFAULT_FPS), "--fps", "Frames per second of the output.")
    postprocessor: str | None = option(None, "--postprocessor", "Post-processor by name.",
                                       aliases=("postprocess",))
    transparent: bool = option(False, "--transparent", "Strokes on a transparent background.")
    writer: str | None = option(None, "--writer", "Writer by name ('flipsketch plugins' lists "
                                                  "them). [default: the output's suffix picks]")


# The sampler stages by name, and the command line's shorthands, which ``check_request``
# folds into the fields (so a recipe, a manifest and the form accept them too).
STAGE_OPTIONS = (
    Option("inverter", "--inverter", "Inverter by name: ddim, or ddim-unit-range, "
           "ddim-sampled, ddim-5-copies, ddim-demo (the drawing encoded as the authors' demo "
           "did). [default: ddim]", type=str | None),
    Option("aligner", "--aligner", f"Aligner by name; '{OFF}' switches alignment off.",
           type=str | None),
    Option("composer", "--composer", f"Composer by name; '{OFF}' switches composition off.",
           type=str | None),
)
SHORTHANDS = (
    Option("motion", "--motion", "The same knob as the demo's slider: motion = 1 - lambda.",
           type=float | None),
    Option("no-compose", "--no-compose", f"Alias of --composer {OFF}.", type=bool,
           default=False),
    Option("raw", "--raw", "Keep grey levels (post-processor 'raw') instead of "
           "black-and-white strokes.", type=bool, default=False),
)


def _in_order(*options: Option) -> dict[str, Option]:
    """By key, each shorthand right after what it shortens (--help's order)."""
    after = {"motion": "lambda", "no-compose": "compose", "raw": "postprocessor"}
    ordered: list[Option] = []
    for o in options:
        if o.key not in after:
            ordered.append(o)
            ordered += [s for s in SHORTHANDS if after[s.key] == o.key]
    return {o.key: o for o in ordered}


# Every option, by key: the sampler's, its stages', the output's.
OPTIONS: dict[str, Option] = _in_order(*_options_of(SamplerSettings), *STAGE_OPTIONS,
                                       *_options_of(OutputSettings), *SHORTHANDS)
_BY_NAME = {name: o for o in OPTIONS.values() for name in (*o.names, o.name, o.key)}


def find_option(name: str) -> Option | None:
    """The option a key, an alias or a field names, spelt with dashes or underscores,
    with or without leading dashes (``frames``, ``num_frames``, ``--align-lr``,
    ``align_lr``, ``lambda_``); None for no option. Flags of booleans are ``Option.flags``."""
    text = name.strip().lower().lstrip("-")
    return _BY_NAME.get(text) or _BY_NAME.get(text.replace("_", "-")) \
        or _BY_NAME.get(text.replace("-", "_"))


def flag_for(field_name: str) -> str:
    """The command-line flag of the settings field ``field_name`` (``num_frames``:
    --frames; the first of a pair), or ``--`` and the field's name for a field no option
    sets (``LoraSettings.batch_size``: --batch-size)."""
    found = next((o for o in OPTIONS.values() if o.field == field_name), None)
    if found is not None:
        return found.flag.partition("/")[0]
    return _OTHER_FLAGS.get(field_name, "--" + field_name.rstrip("_").replace("_", "-"))


# Fields of other settings whose flag is not their name (``flipsketch train lora --batch``).
_OTHER_FLAGS = {"batch_size": "--batch"}


def describe(exc: FlipSketchError, spell: Callable[[str], str] = flag_for) -> str:
    """The one line for an error: a ``SettingsError``'s field spelt by ``spell`` (the
    command line's flag by default; a recipe passes its key, the field's own name)."""
    if isinstance(exc, SettingsError):
        return f"{spell(exc.field)} {exc.problem}"
    return str(exc)


def unknown_option(name: str) -> str:
    """"'stepz' is not an option (did you mean 'steps'?)": the nearest key, for any front end."""
    close = difflib.get_close_matches(name.strip().lower().replace("_", "-"), OPTIONS, n=1)
    return f"'{name}' is not an option" + (f" (did you mean '{close[0]}'?)" if close else "")
