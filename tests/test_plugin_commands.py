"""Commands from plugins (``register_commands``) and their clashes, through real installed
distributions and the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from testing import make_distribution

HELLO = '''
import typer
from flipsketch import hookimpl
from flipsketch.errors import UsageError

@hookimpl
def register_commands(cli):
    @cli.command()
    def hello(who: str = typer.Argument("world")) -> None:
        """Say hello."""
        if who == "nobody":
            raise UsageError("cannot greet nobody; pass a name")
        typer.echo(f"hello, {who}")

    colours = typer.Typer(help="Colour tools.")

    @colours.command("list")
    def list_colours() -> None:
        typer.echo("red green blue")

    cli.add_typer(colours, name="colours")
'''


@pytest.fixture
def install(fresh_plugins, tmp_path, monkeypatch, request) -> Callable[[str, str], None]:
    """``install(name, source)``: a distribution with a ``name_plugin`` module on the import
    path of this process, for this test only; the next command loads plugins afresh."""
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))

    names: list[str] = []

    def install(name: str, source: str) -> None:
        make_distribution(site, name, textwrap.dedent(source))
        request.addfinalizer(lambda: sys.modules.pop(f"{name}_plugin", None))
        names.append(name)  # only these: not whatever else this environment has installed
        monkeypatch.setenv("FLIPSKETCH_LOAD_PLUGINS", ",".join(names))
        fresh_plugins()

    return install


def test_a_plugin_adds_a_command_and_a_group(cli, install):
    install("hello", HELLO)
    help_screen = cli("--help")
    assert help_screen.returncode == 0 and help_screen.stderr == ""
    assert "hello" in help_screen.stdout and "Colour tools." in help_screen.stdout

    assert cli("hello", "Ada").stdout == "hello, Ada\n"
    assert cli("colours", "list").stdout == "red green blue\n"
    # A plugin's errors are flipsketch's: one line, exit 2.
    result = cli("hello", "nobody")
    assert (result.returncode, result.stderr) == (2, "error: cannot greet nobody; pass a "
                                                     "name\n")

    info = json.loads(cli("plugins", "--json").stdout)
    assert info["commands"] == {"colours": "hello", "hello": "hello"}
    assert "hello" in cli("plugins").stdout.split("Commands")[1]


def test_a_command_clashing_with_flipsketchs_own_leaves_the_plugin_out(cli, install):
    install("hello", HELLO)
    install("rival", '''
        from flipsketch import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def animate() -> None:
                """Not flipsketch's animate."""

        @hookimpl
        def register_postprocessors(register):
            register("rival", lambda frames, settings: frames)
        ''')
    result = cli("hello", "Ada")  # the other plugins and commands go on, after one warning
    assert result.returncode == 0 and result.stdout == "hello, Ada\n"
    assert result.stderr == ("warning: plugin 'rival' failed to load (its command 'animate' "
                             "clashes with flipsketch's own); run 'flipsketch plugins' for "
                             "details\n")

    result = cli("plugins", "--json")
    assert result.stderr == ""
    info = json.loads(result.stdout)
    assert [(b["name"], b["error"]) for b in info["broken"]] == [
        ("rival", "its command 'animate' clashes with flipsketch's own")]
    assert "rival" not in info["stages"]["postprocessor"]["implementations"]  # out whole
    assert "rival" not in [p["name"] for p in info["plugins"]]


def test_two_plugins_adding_one_command_name_both(cli, install):
    install("hello", HELLO)
    install("hello2", '''
        from flipsketch import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command("hello")
            def other_hello() -> None:
                """Another hello."""
        ''')
    result = cli("hello", "Ada")
    assert result.stdout == "hello, Ada\n"
    assert "plugin 'hello2' failed to load (its command 'hello' clashes with the one of " \
           "plugin 'hello')" in result.stderr


def test_a_raising_register_commands_is_contained(cli, install):
    install("boom", '''
        from flipsketch import hookimpl

        @hookimpl
        def register_commands(cli):
            raise KeyError("config")
        ''')
    result = cli("plugins", "--json")
    assert result.returncode == 0
    [broken] = json.loads(result.stdout)["broken"]
    assert broken["error"] == "raised in register_commands: KeyError: 'config'"
    result = cli("--help")
    assert result.returncode == 0 and result.stderr.count("warning:") == 1


def test_help_with_plugin_commands_does_not_load_torch(tmp_path):
    """``flipsketch --help`` loads third-party plugins (for their commands) but not the
    built-ins, which import torch."""
    site = tmp_path / "site"
    make_distribution(site, "hello", HELLO)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(site)!r})
        import flipsketch.cli
        try:
            flipsketch.cli.main(["--help"])
        except SystemExit:
            pass
        print("torch" in sys.modules)
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ,
                                              "FLIPSKETCH_LOAD_PLUGINS": "hello"})
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout and result.stdout.strip().endswith("False")
