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
