"""Errors that reach the user as one line.

Anything raised as a ``FlipSketchError`` is printed by the CLI as a single line (no traceback
unless ``--debug``) and turned into its ``exit_code``. The message must name the problem and
the fix, because it is all the user sees.
"""

from __future__ import annotations

import warnings


def one_line(text: str) -> str:
    """``text`` with its line breaks and other control characters written as escapes
    (``\\n``), so that a message quoting user input (a ``--set`` value, a recipe key, a
    file name) stays one line whatever that input holds."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode()
                   for c in text)


def exception_line(exc: BaseException) -> str:
    """``ImportError: needs libfoo``: an exception that is not ours (a plugin's, a library's)
    as one line of a message, its type kept because that is often the only clue."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FlipSketchError(Exception):
    """A failure the user can act on; ``exit_code`` 1 for runtime failures.

    Its message is one line by construction (``one_line``), whatever user text it quotes.
    """

    exit_code = 1

    def __init__(self, *args: object) -> None:
        super().__init__(*(one_line(a) if isinstance(a, str) else a for a in args))


class UsageError(FlipSketchError):
    """Bad input: an option value, a file, a name. Exit code 2, nothing written."""

    exit_code = 2


class PluginError(FlipSketchError):
    """A plugin failed to import, to register, or is unknown."""

    exit_code = 2


class ModelLoadError(FlipSketchError):
    """Weights are missing, unreachable, unsafe or do not fit the model."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM (``kill``, a job scheduler, a container stopping).

    ``flipsketch.cli.main`` raises it from its SIGTERM handler. It is a ``KeyboardInterrupt``
    so that every cleanup written for Ctrl-C (temporaries removed, finished batch jobs kept,
    a recipe's finished steps kept) runs for it too; the CLI exits 143 instead of 130.
    """


class SettingsError(UsageError):
    """A settings value that cannot work, named by its field (``num_frames``, ``lambda_``).

    Settings are shared by several front ends that name the same value differently: the CLI
    has ``--frames``, a recipe has the key ``num_frames`` at some file:line. So validation
    raises the field and the problem ("must be at least 2"), and each front end words the
    line with its own name for the field. ``str()`` uses the field name itself, for callers
    of the Python API.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = one_line(field), one_line(problem)
        super().__init__(f"{field} {problem}")


class FlipSketchWarning(UserWarning):
    """Something the user should know although the command goes on: an animated drawing of
    which only the first frame is used, a prompt cut at the text encoder's limit.

    Raised with ``warnings.warn`` (or ``warn``) where the fact is known (deep in a library
    call, with no console at hand); the CLI prints each as one ``warning:`` line, every time
    it happens.
    """


def warn(message: str) -> None:
    """Tell the user ``message`` and go on: the one way a library function or a plugin prints
    a message. The command line shows it as one ``warning: MESSAGE`` line on stderr, each time
    (a plugin's command included); in Python it is a ``FlipSketchWarning``, which a program
    can filter, record or turn into an error."""
    warnings.warn(one_line(message), FlipSketchWarning, stacklevel=2)
