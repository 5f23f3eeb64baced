"""``flipsketch plugins new``: every kind of skeleton is a package whose own test passes, and
``plugins install``/``uninstall`` put one into (and take it out of) a real environment."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from flipsketch.cli.skeleton import KINDS

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def new(cli, tmp_path: Path, kind: str, name: str = "blue-ink", *extra: str):
    return cli("plugins", "new", name, "--kind", kind, "--dir", tmp_path, *extra)


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_is_a_package_with_its_hook_and_a_test(cli, tmp_path, kind):
    result = new(cli, tmp_path, kind)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "flipsketch-blue-ink"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "README.md", "flipsketch_blue_ink/__init__.py", "pyproject.toml",
        "tests/test_blue_ink.py"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries

    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    assert project["name"] == "flipsketch-blue-ink"
    assert project["entry-points"] == {"flipsketch": {"blue-ink": "flipsketch_blue_ink"}}

    module = ast.parse((folder / "flipsketch_blue_ink" / "__init__.py").read_text())
    hooks = [node for node in ast.walk(module) if isinstance(node, ast.FunctionDef)
             and any(ast.unparse(d) == "hookimpl" for d in node.decorator_list)]
    assert [hook.name for hook in hooks] == [KINDS[kind].hook]
    assert ast.get_docstring(module)
    tests = ast.parse((folder / "tests" / "test_blue_ink.py").read_text())
    assert [n.name for n in tests.body if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")]
    assert "flipsketch-blue-ink" in (folder / "README.md").read_text()


def test_new_refuses_an_existing_package_without_force_and_bad_names(cli, tmp_path):
    assert new(cli, tmp_path, "writer").returncode == 0
    result = new(cli, tmp_path, "command")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "is not empty; pass --force" in result.stderr
    assert new(cli, tmp_path, "command", "blue-ink", "--force").returncode == 0
    module = tmp_path / "flipsketch-blue-ink" / "flipsketch_blue_ink" / "__init__.py"
    assert "register_commands" in module.read_text()

    for name, problem in (("Blue", "lowercase"), ("flipsketch-", "lowercase"),
                          ("a--b", "single hyphens")):
        result = new(cli, tmp_path, "writer", name)
        assert result.returncode == 2 and problem in result.stderr, result.stderr
    result = new(cli, tmp_path, "svg")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: unknown plugin kind 'svg'; pass --kind with one "
                                     "of: writer, postprocessor, composer, backbone, command")


@pytest.mark.slow
def test_every_skeletons_own_test_passes(cli, tmp_path):
    """Each kind's test, run by pytest as its author would, with the package on the path."""
    folders = []
    for kind in KINDS:
        assert new(cli, tmp_path / "new", kind, f"my-{kind}").returncode == 0
        folders.append(tmp_path / "new" / f"flipsketch-my-{kind}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, folders)),
           "FLIPSKETCH_LOAD_PLUGINS": ""}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *(str(folder / "tests") for folder in folders)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(KINDS)} passed" in result.stdout


def temporary_environment(path: Path) -> Path:
    """A virtual environment at ``path`` that sees this one's packages (flipsketch, pip,
    setuptools, pytest) but installs into its own: plugins installed there leave this
    environment as it was. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    # A .pth line starting with "import" runs: addsitedir also reads this environment's own
    # .pth files, flipsketch's editable install among them.
    Path(site.stdout.strip(), "parent.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return python


@pytest.mark.slow
def test_install_a_new_plugin_into_an_environment_run_it_and_uninstall_it(cli, tmp_path):
    assert new(cli, tmp_path, "command", "hi").returncode == 0
    package = tmp_path / "flipsketch-hi"
    python = temporary_environment(tmp_path / "venv")
    # Offline: the package builds with the setuptools already installed, needs nothing else.
    env = {**os.environ, "PIP_NO_INDEX": "1"}
    env.pop("FLIPSKETCH_LOAD_PLUGINS", None)

    def flipsketch(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-m", "flipsketch", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=600)

    result = flipsketch("plugins", "install", "--no-build-isolation", str(package))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installed plugin hi (flipsketch-hi 0.1.0): command hi" in result.stdout

    assert flipsketch("hi", "Ada").stdout == "hello, Ada\n"  # through its entry point
    tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(package / "tests")], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=600)
    assert tests.returncode == 0, tests.stdout + tests.stderr

    result = flipsketch("plugins", "uninstall", "flipsketch-hi")
    assert result.returncode == 0, result.stderr
    result = flipsketch("hi")
    assert result.returncode == 2 and "No such command 'hi'" in result.stderr
    # This environment never saw it.
    assert "flipsketch-hi" not in subprocess.run(
        [sys.executable, "-m", "pip", "list"], capture_output=True, text=True).stdout


def test_uninstall_refuses_what_is_not_an_installed_plugin(cli):
    result = cli("plugins", "uninstall", "flipsketch-nothing-here")
    assert result.returncode == 2 and "is not an installed plugin package" in result.stderr
    result = cli("plugins", "uninstall", "flipsketch")
    assert result.returncode == 2 and "cannot uninstall itself" in result.stderr
