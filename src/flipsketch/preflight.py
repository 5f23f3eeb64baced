"""The one pre-flight check: option values, however a front end parsed them, -> a ``Request``.

``check_request`` runs every check the command line makes before anything loads, in its order
and with its messages; the command line, ``flipsketch batch``, the recipes and the web form
call it, and ``api.animate`` takes its ``Request`` without checking again. The options it
reads are the table's (``flipsketch.settings.OPTIONS``). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from flipsketch.errors import SettingsError, UsageError
from flipsketch.plugins import DEFAULT_LAMBDA, OFF, PluginManager
from flipsketch.settings import (
    MAX_SIZE,
    OPTIONS,
    OutputSettings,
    SamplerSettings,
    unknown_option,
)

SAMPLER_FIELDS = frozenset(f.name for f in dataclasses.fields(SamplerSettings))


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


@dataclass
class Request:
    """A sampling request every check has passed, whichever front end made it:
    ``api.animate`` samples it as it is; its ``output`` says how to post-process and save."""

    prompt: str | None  # None: the options alone (a batch's defaults for its rows)
    settings: SamplerSettings
    stages: dict[str, str | None]  # the sampler stages that run (None: the default)
    output: OutputSettings


def check_request(prompt: str | None, values: Mapping[str, Any],
                  manager: PluginManager) -> Request:
    """The pre-flight check: option values by key (missing: the default) and the prompt
    (None: not checked) -> a ``Request``.

    Every check the command line makes before anything loads, in its order, with its
    messages: shorthands against what they shorten, the sampler settings, the output size,
    every stage by name in its registry, then the prompt. Raises ``UsageError`` or
    ``SettingsError`` (``describe`` words it) for the first value that cannot work.
    """
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise UsageError(unknown_option(unknown[0]))
    given = {key: values.get(key, o.parameter_default) for key, o in OPTIONS.items()}
    postprocessor = given["postprocessor"]
    if given["raw"] and postprocessor not in (None, "raw"):
        raise UsageError("--raw is the 'raw' post-processor; drop --raw or --postprocessor")
    if not given["fps"] > 0:
        raise UsageError("--fps must be positive")
    fields = {o.field: given[key] for key, o in OPTIONS.items() if o.field in SAMPLER_FIELDS}
    fields["lambda_"] = lambda_from(given["lambda"], given["motion"])
    settings, stages = sampler_stages(
        SamplerSettings(**fields), given["inverter"], given["aligner"],
        OFF if given["no-compose"] else given["composer"])
    settings.validate()
    check_size(given["size"])
    output = OutputSettings(size=given["size"], fps=given["fps"],
                            postprocessor="raw" if given["raw"] else postprocessor,
                            transparent=given["transparent"], writer=given["writer"])
    for stage, name in {**stages, "postprocessor": output.postprocessor}.items():
        manager.get(stage, name)
    if output.writer is not None:  # None: the output's name picks one, checked with the path
        manager.get("writer", output.writer)
    if prompt is not None:
        check_prompt(prompt)
    return Request(prompt, settings, stages, output)
