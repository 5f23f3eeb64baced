"""``flipsketch`` command line: one Typer app, one module per command group.

``main`` is the console-script entry point. It turns every failure the user can act on into a
single line on stderr with a non-zero exit code (2 for bad input), and shows tracebacks only
with ``--debug``.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape
from typer.exceptions import TyperException

# ``flipsketch.cli.app`` is the Typer app (tests invoke it); ``main`` runs it with the
# commands plugins add.
from flipsketch.cli.app import app, console, state  # noqa: F401
from flipsketch.errors import FlipSketchError, SettingsError

# Importing the command modules attaches their commands to ``app``.
from flipsketch.cli import animate as _animate  # noqa: E402,F401  isort: skip
from flipsketch.cli import batch as _batch  # noqa: E402,F401  isort: skip
from flipsketch.cli import eval as _eval  # noqa: E402,F401  isort: skip
from flipsketch.cli import models as _models  # noqa: E402,F401  isort: skip
from flipsketch.cli import plugins as _plugins  # noqa: E402,F401  isort: skip
from flipsketch.cli import recipe as _recipe  # noqa: E402,F401  isort: skip
from flipsketch.cli import synth as _synth  # noqa: E402,F401  isort: skip
from flipsketch.cli import train as _train  # noqa: E402,F401  isort: skip


# Settings fields (``SamplerSettings``, ``LoraSettings``) whose flag is not the field's name;
# any other field ``align_lr`` is ``--align-lr``.
FLAGS = {"num_frames": "--frames", "num_inference_steps": "--steps",
         "guidance_scale": "--guidance", "batch_size": "--batch"}


def flag_for(field: str) -> str:
    """The command-line flag that sets the settings field ``field`` (``lambda_``: --lambda)."""
    return FLAGS.get(field, "--" + field.rstrip("_").replace("_", "-"))


def _message(exc: FlipSketchError) -> str:
    """The error's line as the command line says it: a settings field by its flag."""
    if isinstance(exc, SettingsError):
        return f"{flag_for(exc.field)} {exc.problem}"
    return str(exc)


def _error(message: str) -> None:
    # The message holds user text (paths, option values); escaped, "[/]" in a file name is
    # printed as written instead of being read as Rich markup.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _with_plugin_commands(args: list[str]):
    """The app with the commands plugins add; each broken plugin is one warning line, except
    for ``flipsketch plugins``, which lists them. Loads third-party plugins, not torch."""
    from flipsketch.cli.plugins import command_line, warn
    from flipsketch.plugins import get_manager

    manager = get_manager()
    manager.on_broken = None
    group = command_line(manager)
    if next((arg for arg in args if not arg.startswith("-")), None) != "plugins":
        for plugin in manager.broken:  # those found so far: import errors, commands
            warn(plugin)
        manager.on_broken = warn  # and those found later, when registries are built
    return group


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    state.debug = "--debug" in args
    try:
        command = _with_plugin_commands(args)
        # Outside standalone mode click returns the exit code of an Exit, and turns Ctrl-C
        # into Exit(130).
        code = command(args=args, prog_name="flipsketch", standalone_mode=False)
    except FlipSketchError as exc:
        if state.debug:
            raise
        _error(_message(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except TyperException as exc:  # bad option or argument: one line and the fix
        if state.debug:
            raise
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _error(f"{exc.format_message()}{where}")
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    if code == 130:
        _error("interrupted")
    sys.exit(code if isinstance(code, int) else 0)
