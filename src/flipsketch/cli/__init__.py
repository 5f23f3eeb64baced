"""``flipsketch`` command line: one Typer app, one module per command group.

``main`` is the console-script entry point. It turns every failure the user can act on into a
single line on stderr with a non-zero exit code (2 for bad input), and shows tracebacks only
with ``--debug``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings

import typer
from rich.markup import escape
from typer.exceptions import TyperException

# ``flipsketch.cli.app`` is the Typer app (tests invoke it); ``main`` runs it with the
# commands plugins add.
# The flag names and the error line are the API's, shared with plugins (the web page).
from flipsketch.api import flag_for, message  # noqa: F401
from flipsketch.cli.app import DEBUG, app, console, state  # noqa: F401
from flipsketch.errors import FlipSketchError, FlipSketchWarning, Terminated
from flipsketch.openmp import choose_wait_policy

# Importing the command modules attaches their commands to ``app``.
from flipsketch.cli import animate as _animate  # noqa: E402,F401  isort: skip
from flipsketch.cli import batch as _batch  # noqa: E402,F401  isort: skip
from flipsketch.cli import eval as _eval  # noqa: E402,F401  isort: skip
from flipsketch.cli import models as _models  # noqa: E402,F401  isort: skip
from flipsketch.cli import plugins as _plugins  # noqa: E402,F401  isort: skip
from flipsketch.cli import recipe as _recipe  # noqa: E402,F401  isort: skip
from flipsketch.cli import synth as _synth  # noqa: E402,F401  isort: skip
from flipsketch.cli import train as _train  # noqa: E402,F401  isort: skip

# OpenMP threads that spin while they wait make a lone run 1.3-1.6x faster than sleeping ones
# and two torch processes on the same cores 3-6x slower (flipsketch.openmp). The choice must be
# made before torch loads, which no command does at import; a value the user set wins. Child
# processes (`batch --processes`) inherit it.
choose_wait_policy()

def _error(message: str) -> None:
    # The message holds user text (paths, option values); escaped, "[/]" in a file name is
    # printed as written instead of being read as Rich markup.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _warning(message: str) -> None:
    console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _show_warnings(show=warnings.showwarning):
    """A ``warnings.showwarning`` that prints a ``FlipSketchWarning`` as one ``warning:``
    line and hands any other warning to ``show`` (Python's own display)."""
    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, FlipSketchWarning):
            _warning(str(message))
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def _with_plugin_commands(args: list[str]):
    """The app with the commands plugins add; each broken plugin is one warning line, except
    for ``flipsketch plugins``, which lists them. Loads third-party plugins, not torch."""
    from flipsketch.cli.plugins import command_line
    from flipsketch.plugins import get_manager

    manager = get_manager()
    manager.on_broken = None
    group = command_line(manager)
    if next((arg for arg in args if not arg.startswith("-")), None) != "plugins":
        for plugin in manager.broken:  # those found so far: import errors, commands
            _warning(plugin.warning)
        # and those found later, when registries are built
        manager.on_broken = lambda plugin: _warning(plugin.warning)
    return group


class _SigtermAsInterrupt:
    """While the command runs, SIGTERM raises ``Terminated`` (a ``KeyboardInterrupt``).

    By default SIGTERM ends the process on the spot, skipping the cleanup Ctrl-C gets, so a
    ``kill`` during writing left a hidden temporary file behind. Only this process handles it:
    a forked child (a DataLoader worker) inherits the handler but dies as it did before, and
    a second SIGTERM while cleaning up is ignored (SIGKILL still ends it). ``received`` tells
    ``main`` which exit code to use, as typer turns any ``KeyboardInterrupt`` into exit code
    130. The previous handler is put back afterwards: ``main`` also runs inside other
    programs (the test suite).
    """

    received = False

    def __enter__(self) -> _SigtermAsInterrupt:
        self._previous = None
        # Handlers can only be set from the main thread; elsewhere SIGTERM stays as it was.
        if threading.current_thread() is threading.main_thread():
            owner = os.getpid()

            def terminate(signum: int, frame: object) -> None:
                if os.getpid() != owner:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                self.received = True
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                raise Terminated()

            self._previous = signal.signal(signal.SIGTERM, terminate)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    state.debug = DEBUG in args
    sigterm = _SigtermAsInterrupt()
    try:
        command = _with_plugin_commands(args)
        # Outside standalone mode click returns the exit code of an Exit, and turns Ctrl-C
        # into Exit(130).
        # Our warnings are shown every time (not once per place in the code, Python's
        # default), each as one line; both settings end with the command.
        with sigterm, warnings.catch_warnings():
            warnings.simplefilter("always", FlipSketchWarning)
            warnings.showwarning = _show_warnings()
            code = command(args=args, prog_name="flipsketch", standalone_mode=False)
    except FlipSketchError as exc:
        if state.debug:
            raise
        _error(message(exc))
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
    if code == 130 and sigterm.received:
        code = 128 + signal.SIGTERM  # 143, as shells report a process ended by SIGTERM
    if code == 130:
        _error("interrupted")
    elif code == 128 + signal.SIGTERM:
        _error("terminated")
    sys.exit(code if isinstance(code, int) else 0)
