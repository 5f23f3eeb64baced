"""Finding a recipe (a file or a bundled name), reading its YAML with line numbers, ``--set``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from flipsketch.errors import UsageError
from flipsketch.overrides import YamlLoader, load_yaml, parse_override
from flipsketch.plugins import get_manager
from flipsketch.recipes.schema import TOP_LEVEL_KEYS, Recipe, RecipeError, dotted
from flipsketch.recipes.validation import Validator

# -- finding and reading a recipe --------------------------------------------------------------
BUNDLED_DIR = Path(__file__).parents[1] / "bundled_recipes"


def bundled_recipes() -> dict[str, Path]:
    """The recipes shipped with the package, by file name."""
    return {p.name: p for p in sorted(BUNDLED_DIR.glob("*.yaml"))}


def find_recipe(name: str | Path) -> Path:
    """A recipe file: ``name`` itself if it is a file, else the bundled recipe of that name."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = bundled_recipes()
    file_name = path.name if path.suffix == ".yaml" else f"{path.name}.yaml"
    if str(name) == path.name and file_name in bundled:  # a bare name, not a path
        return bundled[file_name]
    if path.exists():
        raise UsageError(f"recipe '{name}' is not a file; pass a .yaml recipe file")
    raise UsageError(f"recipe '{name}' not found: no such file and no bundled recipe of that "
                     f"name; see 'flipsketch recipe list'")


def describe_bundled() -> dict[str, str]:
    """Bundled recipe names with the first line of their descriptions."""
    result = {}
    for name, path in bundled_recipes().items():
        data = load_yaml(path.read_text(encoding="utf-8"))
        result[name] = (str(data.get("description") or "").strip().splitlines() or [""])[0]
    return result


def load_recipe(source: str | Path, overrides: Iterable[str] = (), manager=None) -> Recipe:
    """Read a recipe, apply ``--set`` style ``key=value`` overrides and validate it.

    Raises ``RecipeError`` (a ``UsageError``) naming file, line and key path for the first
    problem. Nothing is written.
    """
    path = find_recipe(source)
    display = str(source) if Path(source).is_file() else path.name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{display}: not UTF-8 text; save the recipe as UTF-8") from None
    except OSError as exc:
        raise RecipeError(f"{display}: cannot be read ({exc.strerror or exc}); check its "
                          f"permissions") from None
    data, lines = _parse(text, display)
    for override in overrides:
        _apply_override(data, lines, override, display)
    return Validator(path, display, lines, manager or get_manager()).recipe(data)


def _parse(text: str, display: str) -> tuple[Any, dict[tuple, int | None]]:
    """YAML text -> (data, line of every key path), YAML errors located by line.

    This is the safe loader: tags outside plain YAML (``!!python/...``) have no constructor
    there, so they fail here with their line instead of running anything.
    """
    try:
        loader = YamlLoader(text)  # which checks every character first
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise RecipeError(f"{display}:{line}: invalid YAML (character U+{exc.character:04X} is "
                          f"not allowed); remove it, or write it as \\u{exc.character:04x} "
                          f"inside a \"double-quoted\" string") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise RecipeError(f"{display}:1: the recipe is empty; start it with 'version: 1' "
                              f"and a list of steps (see 'flipsketch recipe list')")
        data = loader.construct_document(node)
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        tag = re.search(r"tag '([^']+)'", exc.problem or "")
        if tag is None:
            raise RecipeError(f"{display}:{line}: {exc.problem}; recipes are plain mappings, "
                              f"lists, strings and numbers") from None
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        raise RecipeError(f"{display}:{line}: tag {shown} is not allowed; recipes are plain "
                          f"data (mappings, lists, strings, numbers), remove the tag") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RecipeError(f"{display}:{mark.line + 1 if mark else 1}: invalid YAML "
                          f"({exc.problem or exc.context}); fix the syntax there") from None
    except yaml.YAMLError as exc:  # its text spans lines; the message is one
        raise RecipeError(f"{display}: invalid YAML ({' '.join(str(exc).split())}); fix the "
                          f"syntax") from None
    finally:
        loader.dispose()
    lines: dict[tuple, int | None] = {}
    _node_lines(node, (), lines, display, set())
    return data, lines


def _node_lines(node: yaml.Node, path: tuple, lines: dict, display: str, seen: set) -> None:
    """Record the line of every key and list item, and reject duplicate keys.

    An alias makes one node appear in several places; it is walked only once, so an alias
    bomb costs nothing here (and fails type checks at its first use).
    """
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key_path = path + (key_node.value,)
            if key_node.value in keys:
                raise RecipeError(f"{display}:{key_node.start_mark.line + 1}: "
                                  f"{dotted(key_path)}: duplicate key; keep only one")
            keys.add(key_node.value)
            lines[key_path] = key_node.start_mark.line + 1
            _node_lines(value_node, key_path, lines, display, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_lines(item, path + (i,), lines, display, seen)


def _apply_override(data: Any, lines: dict, override: str, display: str) -> None:
    """Apply one ``--set key=value`` to the parsed document, before validation.

    ``key`` is a dotted path: ``model``, ``defaults.seed``, ``steps.letters.text`` (a step by
    name) or ``steps[0].text``; a bare sampler option such as ``seed`` means ``defaults.seed``.
    The value is read as a YAML scalar or list, so numbers and booleans keep their type. An
    overridden key has no line: errors about it name ``--set`` instead.
    """
    key, parts, value = parse_override(override, example="seed=3")
    if not isinstance(data, dict):
        return  # the validator reports the document itself
    if len(parts) == 1 and parts[0] not in TOP_LEVEL_KEYS:
        parts = ["defaults", parts[0]]
    if parts[0] == "defaults" and data.get("defaults") is None:
        data["defaults"] = {}

    target: Any = data
    path: tuple = ()
    for part in parts[:-1]:
        if path == ("steps",) and isinstance(part, str) and isinstance(target, list):
            names = [s.get("name") if isinstance(s, dict) else None for s in target]
            if part not in names:
                raise UsageError(f"--set {key}: {display} has no step named '{part}'; its "
                                 f"steps are: {', '.join(map(str, filter(None, names)))}")
            part = names.index(part)
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            raise UsageError(f"--set {key}: {display} has no '{dotted(path + (part,))}'; "
                             f"check the key path") from None
        path += (part,)
    last = parts[-1]
    settable = (isinstance(target, dict) and isinstance(last, str)) or (
        isinstance(target, list) and isinstance(last, int) and last < len(target))
    if not settable:
        raise UsageError(f"--set {key}: {display} has no '{dotted(path + (last,))}' to set; "
                         f"check the key path")
    target[last] = value
    lines[path + (last,)] = None
