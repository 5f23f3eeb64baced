"""A job's form fields -> the settings ``flipsketch animate`` would run with, checked the same way.

The form's fields are the option table's (``flipsketch.settings.OPTIONS``): every option by its
key as the command line spells it without dashes (``steps``, ``frames``, ``lambda``,
``align-lr``; ``align_lr`` and the settings' own names, ``num_frames``, are accepted too), and
each switch by its flag (``paper``, ``no-align``, ``free-first-frame``: on or off). The checks
are the library's pre-flight check, ``preflight.check_request``, so every problem is reported in
the command line's words (``--frames must be at least 2``). A field the API does not know is
the web's own error, named as it was sent (``the form field 'stepz' is not known (did you mean
'steps'?)``). Nothing here loads torch, so a bad request is answered at once.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flipsketch.api import (
    FALSE,
    OPTIONS,
    TRUE,
    Option,
    SamplerSettings,
    check_request,
    find_option,
)
from flipsketch.errors import UsageError
from flipsketch.plugins import DEFAULT_FPS, DEFAULT_SIZE, PluginManager

# Form fields that are not options.
SKETCH, PROMPT = "sketch", "prompt"

# Chosen by the page: it writes every download kind of a job itself (/api/info "formats").
PAGE_OPTIONS = ("writer",)
# Each switch by its flag (``no-align``: align off), the other options by key.
FLAGS = {flag: (o, value) for o in OPTIONS.values() for flag, value in o.flags.items()}
FIELDS = {**{key: (o, None) for key, o in OPTIONS.items()
             if not o.flags and key not in PAGE_OPTIONS}, **FLAGS}
# Chosen once, when the server starts: a job cannot load another model.
SERVER_OPTIONS = ("model", "unet", "lora", "allow-pickle", "device", "dtype", "backbone")

# The most samples one job may ask for: each sample is a whole animation sampled on the one
# model, so a job is refused before it can hold the queue for hours (the command line has
# no such limit: the person running it waits for their own job).
MAX_SAMPLES = 16


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


def field_of(name: str) -> tuple[Option, Any] | None:
    """(option, the value its flag sets, or None for a valued field) for a field name."""
    if name in FIELDS:
        return FIELDS[name]
    found = find_option(name)  # an alias: num_frames, lambda_
    return None if found is None or found.flags or found.key in PAGE_OPTIONS else (found, None)


def unknown_field(key: str) -> str:
    """The web's own words for a form field it does not know: the field as it was sent (not
    a command-line flag the user never typed), the nearest known field, and all of them."""
    close = difflib.get_close_matches(option_name(key), FIELDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (f"the form field '{key}' is not known{hint}; the fields are "
            f"{', '.join((PROMPT, SKETCH, *FIELDS))}")


@functools.cache
def _animate_command() -> Any:
    """``flipsketch animate`` as its command line parses it."""
    import typer.main

    from flipsketch.cli import app

    return typer.main.get_command(app).commands["animate"]  # type: ignore[attr-defined]


def _switch(name: str, raw: str) -> bool:
    """A switch's field read as on/off (a bare flag, ``curl -F raw=``, means on)."""
    text = raw.strip().lower()
    if text in TRUE or text == "":
        return True
    if text in FALSE:
        return False
    raise UsageError(f"Invalid value for '--{name}': '{raw}' is not one of "
                     f"{', '.join(TRUE + FALSE)}.")


def _convert(name: str, raw: str) -> Any:
    """One value converted by the command line's own parameter (same result, same message:
    "Invalid value for '--steps': ...")."""
    from typer.exceptions import TyperException

    command = _animate_command()
    [param] = [p for p in command.params if f"--{name}" in p.opts]
    try:
        return param.process_value(command.context_class(command), raw.strip())
    except TyperException as exc:
        raise UsageError(exc.format_message()) from None


def parse(fields: Mapping[str, str], manager: PluginManager) -> JobRequest:
    """Check a job's fields (all but the sketch) as ``flipsketch animate`` checks its options.

    Raises ``UsageError``/``SettingsError`` with the command line's message: the first value
    that cannot work, before any sampling.
    """
    values: dict[str, Any] = {}
    given: dict[str, str] = {}  # option key -> the field that set it
    sent: dict[str, str] = {}
    for key, raw in fields.items():
        if key in (SKETCH, PROMPT):
            continue
        name = option_name(key)
        if name in SERVER_OPTIONS:
            raise UsageError(f"--{name} is chosen when the server starts ('flipsketch serve "
                             f"--{name} ...'), not per job")
        if name in PAGE_OPTIONS:
            raise UsageError(f"the page writes every download kind of a job itself; drop the "
                             f"form field '{key}' and pick a download from the job's record")
        found = field_of(name)
        if found is None:
            raise UsageError(unknown_field(key))
        o, flag_value = found
        if o.key in given:
            if given[o.key] == name:
                raise UsageError(f"--{name} is given twice; pass it once")
            raise UsageError(f"pass either --{given[o.key]} or --{name}, not both")
        given[o.key] = name
        sent[name] = raw
        if flag_value is not None:  # a switch: on sets its value; off, the other one
            on = _switch(name, raw)
            if on or len(o.flags) == 2:
                values[o.key] = flag_value if on else not flag_value
        elif raw.strip():  # a form's empty box: the default
            values[o.key] = _convert(o.flag.removeprefix("--"), raw)

    request = check_request(fields.get(PROMPT, ""), values, manager)
    if request.settings.samples > MAX_SAMPLES:
        raise UsageError(f"--samples must be at most {MAX_SAMPLES} on this server (got "
                         f"{request.settings.samples}); run 'flipsketch animate --samples K' "
                         "for more")
    out = request.output
    return JobRequest(prompt=request.prompt, settings=request.settings, stages=request.stages,
                      postprocessor=out.postprocessor, size=out.size, fps=out.fps,
                      transparent=out.transparent, options=sent)
