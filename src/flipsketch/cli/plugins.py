"""``flipsketch plugins``: what is loaded, per stage what can be chosen, and writer clashes."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flipsketch.cli.app import app, stdout
from flipsketch.plugins import get_manager


@app.command("plugins")
def plugins_command(
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List loaded plugins and, per stage, the implementations and the default."""
    description = get_manager().describe()
    if json_output:
        stdout.print_json(json.dumps(description))
        return
    loaded = Table("plugin", "module", "distribution", "version", title="Plugins")
    for plugin in description["plugins"]:
        # Names come from installed packages: escaped, so a "[" in one prints as written.
        name = escape(plugin["name"]) + ("" if plugin["builtin"] else " [cyan](third-party)[/]")
        loaded.add_row(name, *(escape(str(plugin[key]))
                               for key in ("module", "distribution", "version")))
    stages = Table("stage", "implementations", "default", title="Stages")
    for stage, info in description["stages"].items():
        names = [f"{escape(name)} [dim]({escape(owner)})[/]"
                 for name, owner in info["implementations"].items()]
        default = escape(info["default"] or "") + (" [dim](or none)[/]" if info["can_be_off"]
                                                   else "")
        stages.add_row(stage, ", ".join(names) or "[dim](none)[/]", default)
    stdout.print(loaded)
    stdout.print(stages)

    clashes = description["writer_suffix_clashes"]
    if clashes:
        # A clash silently hides a writer from output names; say which one the user gets.
        table = Table("suffix", "claimed by", "used", title="Writer suffix clashes",
                      caption="output names with the suffix go to the first registered "
                              "writer; the others are reached only by name, from Python "
                              "(save_frames(..., writer=NAME))")
        for clash in clashes:
            claimed = [f"{escape(w)} [dim]({escape(o)})[/]"
                       for w, o in zip(clash["writers"], clash["owners"], strict=True)]
            table.add_row(escape(clash["suffix"]), ", ".join(claimed), escape(clash["wins"]))
        stdout.print(table)
