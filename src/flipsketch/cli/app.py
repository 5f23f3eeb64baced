"""The Typer application object and what every command shares: consoles and --debug."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console, ConsoleDimensions

app = typer.Typer(
    name="flipsketch",
    help="Turn a static drawing plus a sentence into a hand-drawn animation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help, as click writes it: Rich help gives every flag a `<bool>` type column
    # (a flag takes no value), and a plain screen reads the same in a terminal and in a log.
    rich_markup_mode=None,
)

# Into a file or a pipe, lines are as long as they are: a table is as wide as its content
# (its names whole for grep and less) and no message is cut at 80 columns.
UNLIMITED_WIDTH = 100_000


class _Console(Console):
    """Rich's console with flipsketch's rules for lines of text and tables.

    Rich wraps every printed line at the width of the terminal, and at 80 columns when there
    is none, inserting line breaks inside values ("0.551 (dropped)" split in two, a path cut
    in half) and squeezing tables into ellipses ("flipsketch.models.b…"). Here a message is
    never broken by Rich (soft wrap: the terminal folds a long line, copying it gives one
    line), and when the output is not a terminal the width has no limit, so a table is printed
    at the width of its content. In a terminal, tables still fit the screen.
    """

    def print(self, *objects: Any, soft_wrap: bool | None = None, **options: Any) -> None:
        # Lines of text only: a table or a live progress display is laid out to the width.
        if soft_wrap is None and all(isinstance(o, str) for o in objects):
            soft_wrap = True
        super().print(*objects, soft_wrap=soft_wrap, **options)

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(UNLIMITED_WIDTH, size.height)


# Progress and messages go to stderr so that --json output on stdout stays machine-readable.
console = _Console(stderr=True)
stdout = _Console()


# The one global option. ``main`` reads it from the command line before anything is parsed,
# so that a failure while parsing or loading plugin commands shows its traceback too; the
# callback below declares it, so that ``--help`` lists it and the parser accepts it.
DEBUG = "--debug"


class State:
    debug: bool = False


state = State()


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, DEBUG, help="Show full tracebacks on errors."),
) -> None:
    # Parsed, it corrects ``main``'s early read: a --debug after the command's name is not
    # this option (the command rejects it as unknown).
    state.debug = debug
