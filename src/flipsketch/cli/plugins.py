"""``flipsketch plugins``: what is loaded, and per stage what can be chosen."""

from __future__ import annotations

import json
from typing import Annotated

import typer
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
        name = plugin["name"] + ("" if plugin["builtin"] else " [cyan](third-party)[/]")
        loaded.add_row(name, plugin["module"], plugin["distribution"], plugin["version"])
    stages = Table("stage", "implementations", "default", title="Stages")
    for stage, info in description["stages"].items():
        names = [f"{name} [dim]({owner})[/]" for name, owner in info["implementations"].items()]
        stages.add_row(stage, ", ".join(names) or "[dim](none)[/]", info["default"] or "")
    stdout.print(loaded)
    stdout.print(stages)
