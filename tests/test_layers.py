"""Import direction: the library never imports its command line, and the command line starts
without torch.

Each check runs in a fresh interpreter, because this test session has long imported both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import flipsketch

PACKAGE = Path(flipsketch.__file__).parent


def library_modules() -> list[str]:
    """Every module of the package except the command line (``cli`` and ``__main__``)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[1:2] in (["cli"], ["__main__"]):
            continue
        names.append(".".join(parts))
    return names


def run_python(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_no_library_module_imports_the_cli():
    modules = library_modules()
    assert {"flipsketch.api", "flipsketch.training.loop", "flipsketch.evaluation.runs"} <= \
        set(modules)
    loaded = run_python(f"""
import importlib, json, sys
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("flipsketch.cli"))))
""")
    assert loaded == []


def test_importing_the_cli_does_not_load_torch():
    # `flipsketch --help` and every command's checks start without waiting for torch; the
    # commands import it when they load a model.
    loaded = run_python("""
import json, sys
import flipsketch.cli
print(json.dumps(sorted(m for m in ("torch", "diffusers", "transformers", "accelerate")
                        if m in sys.modules)))
""")
    assert loaded == []


# The map in docs/DEVELOPING.md, lowest layer first: a module imports only from its own layer
# or the layers below it, lazily or not, and packages of one layer never import each other in
# a circle.
LAYERS = [
    {"errors", "files", "overrides", "devices", "openmp", "__version__"},
    {"plugins", "__init__", "settings", "preflight"},  # the root re-exports hookimpl
    {"sampler", "models", "frames"},
    {"api"},
    # builtins registers the implementations of every stage, recipe steps included
    {"recipes", "training", "evaluation", "batch", "builtins"},
    {"cli", "__main__"},
]


def _unit(module: str) -> str:
    """'flipsketch.sampler.pipeline' -> 'sampler'; 'flipsketch' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(unit: str) -> int:
    return next(i for i, units in enumerate(LAYERS) if unit in units)


# What ``from flipsketch import NAME`` reaches for a name that is not a unit.
ROOT_NAMES = {"hookimpl": "plugins", "__version__": "__version__"}


def _runtime_nodes(tree):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations, never imported)."""
    import ast

    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_by_unit() -> dict[str, set[str]]:
    """Which units each unit imports at run time (also inside functions)."""
    import ast

    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        importer = _unit(".".join(p for p in parts if p != "__init__"))
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
                if node.module == "flipsketch":  # from flipsketch import X
                    targets = [f"flipsketch.{ROOT_NAMES.get(a.name, a.name)}"
                               for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == "flipsketch":
                    edges.setdefault(importer, set()).add(_unit(target))
    return edges


def test_every_unit_sits_in_one_layer_of_the_map():
    units = {_unit(name) for name in library_modules()} | {"cli", "__main__"}
    placed = {u for units_ in LAYERS for u in units_}
    assert units <= placed, f"add {sorted(units - placed)} to LAYERS and docs/DEVELOPING.md"


def test_imports_go_down_the_layers_only():
    upward = sorted(
        f"{importer} imports {imported}"
        for importer, imported_units in imports_by_unit().items()
        for imported in imported_units
        if _layer(imported) > _layer(importer)
    )
    assert upward == []


def test_packages_of_one_layer_import_each_other_in_one_direction():
    edges = imports_by_unit()
    both_ways = sorted(
        f"{a} <-> {b}" for a in edges for b in edges[a]
        if a < b and a in edges.get(b, set()) and _layer(a) == _layer(b)
    )
    assert both_ways == []


# -- the plugin boundary: what a bundled plugin may import from flipsketch ------------------
ROOT = PACKAGE.parents[1]
# The plugin API: a plugin imports flipsketch through these modules only (docs/plugins.md), so
# that it never depends on where a helper lives inside the package.
PLUGIN_API = {"flipsketch.api", "flipsketch.plugins", "flipsketch.errors"}
# Imports past the boundary that are known, each with what removes it. The test fails when
# one is no longer there, so this list only shrinks.
BOUNDARY_EXCEPTIONS = {
    ("flipsketch_web.options", "flipsketch.cli"):
        "reads 'flipsketch animate''s parameters to convert a form field as the command line "
        "does, until each option is declared once (issue 23, item 1)",
    ("flipsketch_web.render", "flipsketch.evaluation.ranking"):
        "best-of-K ranking lives in evaluation, a layer above the API",
}


def plugin_packages() -> list[Path]:
    """Every importable package of every bundled plugin (plugins/NAME/src/PACKAGE)."""
    return sorted(init.parent for init in ROOT.glob("plugins/*/src/*/__init__.py"))


def flipsketch_imports(path: Path) -> set[str]:
    """The flipsketch modules a file imports, anywhere in it (``TYPE_CHECKING`` included:
    a type a plugin names is part of what it depends on)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] == "flipsketch")
    return found


def test_bundled_plugins_import_flipsketch_only_through_the_plugin_api():
    packages = plugin_packages()
    assert {p.name for p in packages} >= {"flipsketch_animatediff", "flipsketch_svg",
                                          "flipsketch_spritesheet", "flipsketch_web"}
    crossing = set()
    for package in packages:
        for path in package.rglob("*.py"):
            module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            crossing |= {(module, name) for name in flipsketch_imports(path)
                         if name not in PLUGIN_API}
    assert crossing - set(BOUNDARY_EXCEPTIONS) == set(), "import these through flipsketch.api"
    assert set(BOUNDARY_EXCEPTIONS) - crossing == set(), "gone: drop it from the exceptions"


def test_the_names_the_api_lends_plugins_exist():
    # ``flipsketch.api`` lends plugins helpers from lower layers on first use (PEP 562).
    import flipsketch.api

    for name in flipsketch.api.PLUGIN_EXPORTS:
        assert getattr(flipsketch.api, name) is not None, name



# -- module size: one concept per module ---------------------------------------------------------
MAX_LINES = 500


def test_no_module_is_over_500_lines():
    """A module past 500 lines has been holding several concepts (synth.py held subjects,
    doodles, the pen, motions, clips and datasets in 992): split it by concept instead."""
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


# -- tests share helpers through tests/testing.py only ------------------------------------------
def test_test_modules_share_helpers_only_through_the_testing_module():
    """A helper one test module imports from another (or from conftest, which holds fixtures
    and hooks) ties their fates together; shared helpers live in tests/testing.py."""
    import ast

    tests = Path(__file__).parent
    modules = [*tests.glob("*.py"), *ROOT.glob("plugins/*/tests/*.py")]  # bundled plugins' too
    assert len(modules) > len(list(tests.glob("*.py")))
    crossing = sorted(
        f"{path.name}: {node.module}"
        for path in modules
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module
        and (node.module == "conftest" or node.module.startswith("test_")))
    assert crossing == []
