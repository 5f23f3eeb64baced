"""Errors that reach the user as one line.

Anything raised as a ``FlipSketchError`` is printed by the CLI as a single line (no traceback
unless ``--debug``) and turned into its ``exit_code``. The message must name the problem and
the fix, because it is all the user sees.
"""

from __future__ import annotations


class FlipSketchError(Exception):
    """A failure the user can act on; ``exit_code`` 1 for runtime failures."""

    exit_code = 1


class UsageError(FlipSketchError):
    """Bad input: an option value, a file, a name. Exit code 2, nothing written."""

    exit_code = 2


class PluginError(FlipSketchError):
    """A plugin failed to import, to register, or is unknown."""

    exit_code = 2


class ModelLoadError(FlipSketchError):
    """Weights are missing, unreachable, unsafe or do not fit the model."""

    exit_code = 2


class SettingsError(UsageError):
    """A settings value that cannot work, named by its field (``num_frames``, ``lambda_``).

    Settings are shared by several front ends that name the same value differently: the CLI
    has ``--frames``, a recipe has the key ``num_frames`` at some file:line. So validation
    raises the field and the problem ("must be at least 2"), and each front end words the
    line with its own name for the field. ``str()`` uses the field name itself, for callers
    of the Python API.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field} {problem}")
