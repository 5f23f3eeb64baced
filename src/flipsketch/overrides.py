"""YAML data as flipsketch reads it, and ``KEY=VALUE`` edits of it (``--set``)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from flipsketch.errors import UsageError


class YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``3e-5`` and ``1E6`` as numbers.

    PyYAML follows YAML 1.1, where a float needs a dot, so ``lr: 3e-5`` arrived as the text
    ``"3e-5"`` and failed far from the file; YAML 1.2 (and every other tool) reads a number.
    """


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """Plain YAML data (no Python tags, no code), numbers read as YAML 1.2 reads them."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - YamlLoader is a SafeLoader


def parse_override(override: str, example: str) -> tuple[str, list[str | int], Any]:
    """``"a.b[0].c=VALUE"`` -> ``("a.b[0].c", ["a", "b", 0, "c"], value)``.

    The value is read as a YAML scalar or list (``load_yaml``), so numbers and booleans keep their
    type; text that YAML would turn into a mapping or null stays text.
    """
    key, sep, raw = override.partition("=")
    parts: list[str | int] = [int(t[1:-1]) if t.startswith("[") else t
                              for t in re.findall(r"\[\d+\]|[^.\[\]]+", key.strip())]
    if not sep or not parts:
        raise UsageError(f"--set '{override}' is not key=value; write e.g. --set {example}")
    try:
        value = load_yaml(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, dict) or (value is None and raw.strip() not in ("null", "~")):
        value = raw  # "a cat: running" or "" would become a mapping or null; it is text
    return key.strip(), parts, value
