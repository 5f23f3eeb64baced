"""A job's form fields -> the settings ``flipsketch animate`` would run with, checked the same way.

The API names every option as the command line does (``steps``, ``frames``, ``lambda``,
``align-lr``; ``align_lr`` is accepted too), and every problem is reported in the command
line's words (``--frames must be at least 2``), because the checks are the core's own:
``SamplerSettings.validate``, ``check_prompt``, ``check_size``, ``sampler_stages`` and the
plugin registries. A field the API does not know is the web's own error, named as it was
sent (``the form field 'stepz' is not known (did you mean 'steps'?)``). Nothing here loads
torch, so a bad request is answered at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flipsketch.api import (
    OFF,
    SamplerSettings,
    check_prompt,
    check_size,
    flag_for,
    lambda_from,
    sampler_stages,
)
from flipsketch.errors import UsageError
from flipsketch.plugins import DEFAULT_FPS, DEFAULT_SIZE, PluginManager

# Form fields that are not options.
SKETCH, PROMPT = "sketch", "prompt"

# SamplerSettings fields by their command-line name; the boolean fields (``bool`` or
# ``bool | None``) have their own flags on the command line (--no-align, --paper,
# --keep-first-frame/--free-first-frame), listed below.
_HINTS = typing.get_type_hints(SamplerSettings)
SAMPLER_OPTIONS = {flag_for(f.name)[2:]: f.name for f in dataclasses.fields(SamplerSettings)
                   if bool not in (_HINTS[f.name], *typing.get_args(_HINTS[f.name]))}
FLAGS = ("no-align", "no-compose", "paper", "keep-first-frame", "free-first-frame",
         "align-checkpointing", "no-align-checkpointing", "raw", "transparent")
STAGE_OPTIONS = ("inverter", "aligner", "composer", "postprocessor")
OUTPUT_OPTIONS = {"size": int, "fps": float}
OPTIONS = (*SAMPLER_OPTIONS, "motion", *FLAGS, *STAGE_OPTIONS, *OUTPUT_OPTIONS)
# Chosen once, when the server starts: a job cannot load another model.
SERVER_OPTIONS = ("model", "unet", "lora", "allow-pickle", "device", "dtype", "backbone")

# The most samples one job may ask for: each sample is a whole animation sampled on the one
# model, so a job is refused before it can hold the queue for hours (the command line has
# no such limit: the person running it waits for their own job).
MAX_SAMPLES = 16
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass
class JobRequest:
    """Everything one job runs with, checked: what ``flipsketch animate`` would have run."""

    prompt: str
    settings: SamplerSettings
    stages: dict[str, str | None]  # the sampler stages that run (sampler_stages' names)
    postprocessor: str | None = None
    size: int = DEFAULT_SIZE
    fps: float = DEFAULT_FPS
    transparent: bool = False
    options: dict[str, str] = field(default_factory=dict)  # as sent, for the job's record


def option_name(key: str) -> str:
    """``align_lr``, ``--align-lr`` and ``lambda_`` all name ``align-lr`` / ``lambda``."""
    return key.strip().lower().lstrip("-").rstrip("_").replace("_", "-")


def unknown_field(key: str) -> str:
    """The web's own words for a form field it does not know: the field as it was sent (not
    a command-line flag the user never typed), the nearest known field, and all of them."""
    close = difflib.get_close_matches(option_name(key), OPTIONS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (f"the form field '{key}' is not known{hint}; the fields are "
            f"{', '.join((PROMPT, SKETCH, *OPTIONS))}")


@functools.cache
def _animate_command() -> Any:
    """``flipsketch animate`` as its command line parses it."""
    import typer.main

    from flipsketch.cli import app

    return typer.main.get_command(app).commands["animate"]  # type: ignore[attr-defined]


def _convert(name: str, raw: str, kind: type) -> Any:
    """One value converted by the command line's own parameter (same result, same message:
    "Invalid value for '--steps': ..."); flags, which take no value there, read as on/off."""
    if kind is bool:
        text = raw.strip().lower()
        if text in TRUE or text == "":  # a bare flag (curl -F raw=) means on
            return True
        if text in FALSE:
            return False
        raise UsageError(f"Invalid value for '--{name}': '{raw}' is not one of "
                         f"{', '.join(TRUE + FALSE)}.")
    from typer.exceptions import TyperException

    command = _animate_command()
    [param] = [p for p in command.params if f"--{name}" in p.opts]
    try:
        return param.process_value(command.context_class(command), raw.strip())
    except TyperException as exc:
        raise UsageError(exc.format_message()) from None


def _kind(field_name: str) -> type:
    """``int`` for ``int`` and for ``int | None``."""
    hint = _HINTS[field_name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def parse(fields: Mapping[str, str], manager: PluginManager) -> JobRequest:
    """Check a job's fields (all but the sketch) as ``flipsketch animate`` checks its options.

    Raises ``UsageError``/``SettingsError`` with the command line's message: the first value
    that cannot work, before any sampling.
    """
    values: dict[str, str] = {}
    for key, raw in fields.items():
        if key in (SKETCH, PROMPT):
            continue
        name = option_name(key)
        if name in SERVER_OPTIONS:
            raise UsageError(f"--{name} is chosen when the server starts ('flipsketch serve "
                             f"--{name} ...'), not per job")
        if name not in OPTIONS:
            raise UsageError(unknown_field(key))
        if name in values:
            raise UsageError(f"--{name} is given twice; pass it once")
        if raw.strip() or name in FLAGS:  # a form's empty box: the default
            values[name] = raw

    flags = {name: _convert(name, values[name], bool) for name in FLAGS if name in values}
    sampler = {SAMPLER_OPTIONS[name]: _convert(name, raw, _kind(SAMPLER_OPTIONS[name]))
               for name, raw in values.items() if name in SAMPLER_OPTIONS}
    motion = _convert("motion", values["motion"], float) if "motion" in values else None
    output = {name: _convert(name, values[name], kind) for name, kind in OUTPUT_OPTIONS.items()
              if name in values}
    stages = {name: values[name].strip() for name in STAGE_OPTIONS if name in values}

    # The command line's own checks, in its order (flipsketch.cli.animate._run).
    sampler["lambda_"] = lambda_from(sampler.get("lambda_"), motion)
    raw = flags.get("raw", False)
    postprocessor = stages.pop("postprocessor", None)
    if raw and postprocessor not in (None, "raw"):
        raise UsageError("--raw is the 'raw' post-processor; drop --raw or --postprocessor")
    fps = output.get("fps", DEFAULT_FPS)
    if fps <= 0:
        raise UsageError("--fps must be positive")
    if "paper" in flags:
        sampler["paper"] = flags["paper"]
    if "keep-first-frame" in flags and "free-first-frame" in flags:
        raise UsageError("pass either --keep-first-frame or --free-first-frame, not both")
    if flags.get("free-first-frame"):
        sampler["keep_first_frame"] = False
    elif "keep-first-frame" in flags:
        sampler["keep_first_frame"] = flags["keep-first-frame"]
    if flags.get("no-align-checkpointing"):
        sampler["align_checkpointing"] = False
    elif "align-checkpointing" in flags:
        sampler["align_checkpointing"] = flags["align-checkpointing"]

    settings, names = sampler_stages(
        SamplerSettings(**sampler), stages.get("inverter"),
        OFF if flags.get("no-align") else stages.get("aligner"),
        OFF if flags.get("no-compose") else stages.get("composer"))
    settings.validate()
    if settings.samples > MAX_SAMPLES:
        raise UsageError(f"--samples must be at most {MAX_SAMPLES} on this server (got "
                         f"{settings.samples}); run 'flipsketch animate --samples K' for more")
    prompt = fields.get(PROMPT, "")
    check_prompt(prompt)
    size = output.get("size", DEFAULT_SIZE)
    check_size(size)
    postprocessor = "raw" if raw else postprocessor
    for stage, name in {**names, "postprocessor": postprocessor}.items():
        manager.get(stage, name)
    return JobRequest(prompt=prompt, settings=settings, stages=names,
                      postprocessor=postprocessor, size=size, fps=fps,
                      transparent=bool(flags.get("transparent", False)), options=values)
