"""The sampler and output options of ``animate``, ``generate`` and ``batch``, made from the
table in ``flipsketch.settings`` (``OPTIONS``): one Typer option per entry, with its flag, help,
type and default, in a help panel of its own. A command takes them with ``@with_options``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from flipsketch.settings import OPTIONS, Option, OutputSettings

PANELS = {"sampler": "Sampler", "output": "Output"}
_OUTPUT_FIELDS = set(OutputSettings.__dataclass_fields__)
Command = TypeVar("Command", bound=Callable[..., Any])


def panel(o: Option) -> str:
    """Output options (size, fps, the post-processor, transparency, --raw) go in one help
    panel, the sampler's (and its stages') in another."""
    output = o.field in _OUTPUT_FIELDS or o.key == "raw"  # --raw: the 'raw' post-processor
    return PANELS["output" if output else "sampler"]


def annotated(key: str) -> Any:
    """``Annotated[type, typer.Option(...)]`` for the option ``key``, for a command that
    declares a single one of them by hand (``flipsketch eval --paper``)."""
    o = OPTIONS[key]
    return Annotated[o.type, typer.Option(o.flag, help=o.help, metavar=o.metavar)]


def parameters() -> list[inspect.Parameter]:
    """Every option of the table as a keyword-only parameter, in the table's order."""
    return [inspect.Parameter(
        o.name, inspect.Parameter.KEYWORD_ONLY, default=o.parameter_default,
        annotation=Annotated[o.type, typer.Option(
            o.flag, help=o.help, metavar=o.metavar, rich_help_panel=panel(o),
            show_default=not (o.type is bool and "/" not in o.flag))])  # a switch: no default
        for o in OPTIONS.values()]


def with_options(command: Command) -> Command:
    """Give ``command`` (``def command(own..., **options)``) every option of the table as a
    keyword parameter after its own, so Typer parses them all; ``options`` then holds them by
    Python name (``lambda_``, ``align_lr``), which ``values`` turns into the table's keys."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = inspect.Signature([*own, *parameters()])  # type: ignore[attr-defined]
    return command


def values(options: dict[str, Any]) -> dict[str, Any]:
    """A command's ``**options`` (by Python name) by the table's keys, for
    ``preflight.check_request``."""
    return {o.key: options[o.name] for o in OPTIONS.values()}
