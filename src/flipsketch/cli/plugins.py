"""``flipsketch plugins``: what is loaded (and what is broken), per stage what can be chosen,
writer clashes; ``install``/``uninstall`` through pip; ``new`` to start a plugin package.

It also holds ``command_line``, which adds the commands that plugins register
(``register_commands``) to flipsketch's own, each plugin's failure contained to it.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.markup import escape
from rich.table import Table

from flipsketch.cli.app import app, console, stdout
from flipsketch.cli.skeleton import KINDS, write_skeleton
from flipsketch.errors import PluginError, UsageError, exception_line
from flipsketch.plugins import (
    COMMANDS_HOOK,
    ENTRY_POINT_GROUP,
    PluginManager,
    get_manager,
)
from flipsketch.plugins.manager import OWN_DISTRIBUTION

plugins_app = typer.Typer(help="List, install, remove and start flipsketch plugins.",
                          rich_markup_mode=None)
app.add_typer(plugins_app, name="plugins")


# -- plugin commands ---------------------------------------------------------------------------
def plugin_cli() -> typer.Typer:
    """The ``cli`` a plugin's ``register_commands`` gets: settings as flipsketch's own app."""
    return typer.Typer(rich_markup_mode=None, add_completion=False,
                       pretty_exceptions_enable=False)


def command_line(manager: PluginManager) -> typer.core.TyperGroup:
    """flipsketch's commands plus every plugin's, as one command group to run.

    Built anew for each run from the app and the manager's plugins, so the app itself is never
    changed. A plugin whose hook raises, or whose command name is taken (by flipsketch or by a
    plugin registered before it), is left out whole (``manager.mark_broken``) with an error
    naming both; the other plugins' commands stay.
    """
    group = typer.main.get_group(app)
    own = set(group.commands)
    manager.commands = {}
    for owner, register_commands in manager.hook_callers(COMMANDS_HOOK):
        cli = plugin_cli()
        try:
            register_commands(cli=cli)
            added = (typer.main.get_group(cli).commands
                     if cli.registered_commands or cli.registered_groups else {})
        except Exception as exc:
            manager.mark_broken(owner, f"raised in {COMMANDS_HOOK}: {exception_line(exc)}")
            continue
        clash = next((name for name in added if name in own or name in manager.commands), None)
        if clash is not None:
            other = ("flipsketch's own" if clash in own
                     else f"the one of plugin '{manager.commands[clash]}'")
            manager.mark_broken(owner, f"its command '{clash}' clashes with {other}")
            continue
        for name, command in added.items():
            group.add_command(command, name)
            manager.commands[name] = owner
    return group


# -- flipsketch plugins ------------------------------------------------------------------------
@plugins_app.callback(invoke_without_command=True)
def plugins_command(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option(
        "--json", help="JSON on stdout: the machine-readable form for scripts (the tables are "
                       "for reading; piped to a file they keep whole names).")] = False,
) -> None:
    """List loaded plugins, broken ones with their error, and per stage the implementations
    and the default."""
    if ctx.invoked_subcommand is not None:
        return
    description = get_manager().describe()
    if json_output:
        stdout.print_json(json.dumps(description))
        return
    print_description(description)


def print_description(description: dict[str, Any]) -> None:
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

    if description["commands"]:
        commands = Table("command", "plugin", title="Commands")
        for command, owner in description["commands"].items():
            commands.add_row(escape(command), escape(owner))
        stdout.print(commands)

    if description["broken"]:
        # Listed here, not warned about: this is the command that diagnoses them.
        broken = Table("plugin", "distribution", "version", "error",
                       title="Broken plugins (left out)",
                       caption="fix or uninstall each (flipsketch plugins uninstall "
                               "DISTRIBUTION), or leave it out with FLIPSKETCH_LOAD_PLUGINS")
        for plugin in description["broken"]:
            broken.add_row(*(escape(plugin[key])
                             for key in ("name", "distribution", "version", "error")))
        stdout.print(broken)

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


# -- install / uninstall -----------------------------------------------------------------------
def pip(*args: str) -> None:
    """Run pip in this interpreter, so packages land where this flipsketch loads plugins from
    (a virtual environment's, say); its output goes straight to the terminal."""
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]
    code = subprocess.call(command)
    if code != 0:
        raise PluginError(f"pip {args[0]} failed (exit {code}); see pip's output above")


def plugin_distributions() -> dict[str, str]:
    """Distribution -> version of every installed package with flipsketch plugins."""
    return {ep.dist.name: ep.dist.version
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.dist is not None and ep.dist.name != OWN_DISTRIBUTION}


def loaded_plugins() -> dict[str, Any]:
    """``flipsketch plugins --json`` of a fresh process: one that sees what pip just
    installed, import hooks of editable installs included, which this process cannot."""
    result = subprocess.run([sys.executable, "-m", "flipsketch", "plugins", "--json"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise PluginError(f"flipsketch could not list its plugins after installing: "
                          f"{result.stderr.strip().splitlines()[-1:]}; run 'flipsketch "
                          f"--debug plugins' to see why")
    return json.loads(result.stdout)


@plugins_app.command("install")
def install_command(
    packages: Annotated[list[str], typer.Argument(
        help="Package names (flipsketch-NAME) or paths of plugin packages.",
        show_default=False)],
    upgrade: Annotated[bool, typer.Option("--upgrade", "-U",
                                          help="Upgrade packages already installed.")] = False,
    editable: Annotated[bool, typer.Option(
        "--editable", "-e", help="Install a path so that edits take effect at once.")] = False,
    no_build_isolation: Annotated[bool, typer.Option(
        "--no-build-isolation", help="Build with the packages already installed (pip's "
        "option): offline, a local path needs no download.")] = False,
) -> None:
    """Install plugin packages with pip into the Python that runs flipsketch, then list the
    plugins they added."""
    if OWN_DISTRIBUTION in packages:
        raise UsageError("flipsketch is not a plugin; install flipsketch-NAME packages or paths")
    before = plugin_distributions()
    options = [*(["--upgrade"] if upgrade else []),
               *(["--no-build-isolation"] if no_build_isolation else [])]
    targets = [arg for package in packages for arg in (["-e", package] if editable
                                                       else [package])]
    pip("install", *options, *targets)
    description = loaded_plugins()
    new = {dist for dist, version in plugin_distributions().items()
           if before.get(dist) != version}
    added = [p for p in description["plugins"] if p["distribution"] in new]
    broken = [p for p in description["broken"] if p["distribution"] in new]
    if not added and not broken:
        console.print("installed; no new flipsketch plugins (a package lists its plugins "
                      f"under the '{ENTRY_POINT_GROUP}' entry-point group)", highlight=False)
        return
    provides = provided_by(description)
    for plugin in added:
        stdout.print(f"installed plugin [bold]{escape(plugin['name'])}[/] "
                     f"({escape(plugin['distribution'])} {escape(plugin['version'])}): "
                     f"{escape(', '.join(provides.get(plugin['name'], [])) or 'no hooks')}",
                     highlight=False)
    for plugin in broken:
        console.print(f"[bold red]error:[/] {escape(plugin['message'])}", highlight=False)
    if broken:
        raise typer.Exit(2)


def provided_by(description: dict[str, Any]) -> dict[str, list[str]]:
    """Plugin -> what it provides, as "writer svg" and "command svg", for the install report."""
    provides: dict[str, list[str]] = {}
    for stage, info in description["stages"].items():
        for name, owner in info["implementations"].items():
            provides.setdefault(owner, []).append(f"{stage} {name}")
    for name, owner in description["commands"].items():
        provides.setdefault(owner, []).append(f"command {name}")
    return provides


@plugins_app.command("uninstall")
def uninstall_command(
    packages: Annotated[list[str], typer.Argument(
        help="Distribution names, as 'flipsketch plugins' lists them.", show_default=False)],
) -> None:
    """Uninstall plugin packages with pip from the Python that runs flipsketch."""
    installed = plugin_distributions()
    for package in packages:
        if package == OWN_DISTRIBUTION:
            raise UsageError("flipsketch cannot uninstall itself; run 'pip uninstall "
                             "flipsketch' instead")
        if package not in installed:
            known = ", ".join(sorted(installed)) or "(none installed)"
            raise UsageError(f"'{package}' is not an installed plugin package; installed: "
                             f"{known}")
    pip("uninstall", "--yes", *packages)
    stdout.print(f"uninstalled {escape(', '.join(packages))}", highlight=False)


# -- new ---------------------------------------------------------------------------------------
@plugins_app.command("new")
def new_command(
    name: Annotated[str, typer.Argument(help="Plugin name: the package is flipsketch-NAME.",
                                        show_default=False)],
    kind: Annotated[str, typer.Option("--kind", help=f"One of: {', '.join(KINDS)}.",
                                      show_default=False)],
    directory: Annotated[Path, typer.Option("--dir", help="Folder to create the package "
                                            "in.")] = Path("."),
    force: Annotated[bool, typer.Option("--force",
                                        help="Replace an existing package folder.")] = False,
) -> None:
    """Write an installable plugin package to start from: pyproject.toml with the entry
    point, the module with a working hook, one passing test and a README."""
    folder = write_skeleton(name, kind, directory, force=force)
    stdout.print(f"wrote {escape(str(folder))}; try it with 'flipsketch plugins install -e "
                 f"{escape(str(folder))}' and run its test with 'pytest {escape(str(folder))}'",
                 highlight=False, soft_wrap=True)
