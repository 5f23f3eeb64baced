"""The Typer application object and what every command shares: consoles and --debug."""

from __future__ import annotations

import typer
from rich.console import Console

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

# Progress and messages go to stderr so that --json output on stdout stays machine-readable.
console = Console(stderr=True)
stdout = Console()


class State:
    debug: bool = False


state = State()


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    state.debug = debug
