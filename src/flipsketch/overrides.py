"""``KEY=VALUE`` edits of nested YAML data: ``--set`` for recipes and training configs."""

from __future__ import annotations

import re
from typing import Any

import yaml

from flipsketch.errors import UsageError


def parse_override(override: str, example: str) -> tuple[str, list[str | int], Any]:
    """``"a.b[0].c=VALUE"`` -> ``("a.b[0].c", ["a", "b", 0, "c"], value)``.

    The value is read as a YAML scalar or list (safe_load), so numbers and booleans keep their
    type; text that YAML would turn into a mapping or null stays text.
    """
    key, sep, raw = override.partition("=")
    parts: list[str | int] = [int(t[1:-1]) if t.startswith("[") else t
                              for t in re.findall(r"\[\d+\]|[^.\[\]]+", key.strip())]
    if not sep or not parts:
        raise UsageError(f"--set '{override}' is not key=value; write e.g. --set {example}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, dict) or (value is None and raw.strip() not in ("null", "~")):
        value = raw  # "a cat: running" or "" would become a mapping or null; it is text
    return key.strip(), parts, value
