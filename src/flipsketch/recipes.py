"""YAML recipes: a whole workflow in one file, checked completely before anything runs.

A recipe is plain data, read with ``yaml.safe_load`` rules (no Python tags, no shell, no code)::

    version: 1
    description: the word CAT becomes a cat
    model: tiny                      # the FlipSketch model for the sketch steps
    defaults: {num_inference_steps: 25, seed: 0}   # sampler options for every sketch step
    steps:
      - {name: letters, type: word, text: CAT, prompt: the letters turn into a cat}
      - {name: gif, type: write, input: letters, path: cat.gif}

Steps run in order. A step uses an earlier step's frames by naming it as its ``input``. Step
types are plugins (``register_recipe_steps``); the built-in ones at the end of this module
register through that same hook. Sampler options come from the sampler's own defaults, then the
recipe's ``defaults``, then the step type's defaults (``word`` turns temporal composition off),
then the step's own keys; ``--set`` edits the document before any of this.

Every problem is reported as one line ``file:line: key.path: problem`` (the line comes from
YAML's node marks); input files, output paths and plugin names are all checked before the
first step starts. Input paths are relative to the recipe file (to the current folder when
given with ``--set``); outputs must stay inside OUTDIR.

Each step's result is cached in OUTDIR under a hash of everything it depends on (its keys, the
content of its input files, the model, the hashes of the steps it reads), so a re-run redoes
only the steps whose inputs changed, and the steps after them.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import secrets
import time
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFont

from flipsketch import __version__, hookimpl
from flipsketch.api import DEFAULT_MODEL, SamplerSettings, animate, load_pipeline, postprocess
from flipsketch.backbone import resolve_device, resolve_dtype, resolve_model
from flipsketch.errors import FlipSketchError, UsageError
from flipsketch.images import array_to_images, images_to_array, load_sketch
from flipsketch.plugins import get_manager
from flipsketch.video import VideoModels, load_video_pipeline, sketch_to_video
from flipsketch.writers import Writer, claimed_suffix, numbered_paths, save_frames

RECIPE_VERSION = 1
BUNDLED_DIR = Path(__file__).parent / "bundled_recipes"
CACHE_DIR = ".flipsketch"  # inside OUTDIR: cached frames and the manifest of our outputs
DEFAULT_FPS = 10.0  # the paper's GIFs
STAGE_OPTIONS = ("inverter", "aligner", "composer")  # sampler options naming plugin stages
TOP_LEVEL_KEYS = ("version", "description", "model", "device", "dtype", "defaults", "steps")
_STEP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class RecipeError(UsageError):
    """A problem in a recipe, located as ``file:line: key.path: problem``."""


class StepError(Exception):
    """Raised by a step type's ``check`` about one of the step's keys (None: the whole step)."""
    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


# -- the format -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One key of a step type.

    ``type`` is ``str``, ``int``, ``float`` (ints accepted), ``bool``, ``list[str]`` or
    ``list[int]``. ``kind`` says how the value is resolved: ``file`` (a path relative to the
    recipe, hashed by content for the cache), ``output`` (a path inside OUTDIR), ``step`` (the
    name of an earlier step that makes frames), ``model`` (a hub id, or a folder relative to the
    recipe) or ``stage:NAME`` (an implementation registered for plugin stage NAME). ``check``
    returns what is wrong with a value of the right type, or None.
    """

    type: Any
    required: bool = False
    default: Any = None
    kind: str = "value"
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class StepType:
    """A kind of recipe step, registered with ``register_recipe_steps``.

    ``run(ctx, step)`` returns the frames it made, one ``Clip`` per sample, or None for a step
    that only writes files (one with ``output`` fields). A ``sampler`` step also takes every
    sampler option (the ``SamplerSettings`` fields and the inverter/aligner/composer names);
    its ``defaults`` override the recipe's defaults for this type. ``check(step)`` may reject
    combinations of keys by raising ``StepError``.
    """

    run: Callable[[StepContext, Step], list[Clip] | None]
    fields: dict[str, Field]
    description: str = ""
    sampler: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    check: Callable[[Step], None] | None = None

    @property
    def makes_frames(self) -> bool:
        return not any(f.kind == "output" for f in self.fields.values())


@dataclass
class Clip:
    """Frames passed from step to step: (F, H, W) grey or (F, H, W, 3) RGB, float32 in [0, 1]
    with 1 = white, and the frame rate they are meant to play at."""

    frames: np.ndarray
    fps: float = DEFAULT_FPS


@dataclass
class Step:
    """One validated step: its own keys with defaults filled in and paths resolved."""
    name: str
    type: str
    step_type: StepType
    params: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)  # merged sampler options
    settings: Any = None  # flipsketch.api.SamplerSettings, for sampler steps
    stages: dict[str, str] = field(default_factory=dict)  # inverter/aligner/composer
    clips: int = 1  # how many clips it makes; 0 for a step that only writes files
    outputs: list[str] = field(default_factory=list)  # files it writes, relative to OUTDIR

    @property
    def inputs(self) -> list[str]:
        """Names of the earlier steps whose frames this one reads."""
        return [self.params[key] for key, spec in self.step_type.fields.items()
                if spec.kind == "step" and self.params.get(key) is not None]


@dataclass
class Recipe:
    """A validated recipe, ready to run."""
    path: Path
    display: str  # how messages name the file
    description: str
    model: str
    device: str | None
    dtype: str | None
    steps: list[Step]


# -- finding and reading a recipe --------------------------------------------------------------
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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
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
    return _Validator(path, display, lines, _manager(manager)).recipe(data)


def _manager(manager):
    if manager is None:
        manager = get_manager()
    return manager


def _parse(text: str, display: str) -> tuple[Any, dict[tuple, int | None]]:
    """YAML text -> (data, line of every key path), YAML errors located by line.

    This is the safe loader: tags outside plain YAML (``!!python/...``) have no constructor
    there, so they fail here with their line instead of running anything.
    """
    loader = yaml.SafeLoader(text)
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
    except yaml.YAMLError as exc:
        raise RecipeError(f"{display}: invalid YAML ({exc}); fix the syntax") from None
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
                                  f"{_dotted(key_path)}: duplicate key; keep only one")
            keys.add(key_node.value)
            lines[key_path] = key_node.start_mark.line + 1
            _node_lines(value_node, key_path, lines, display, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_lines(item, path + (i,), lines, display, seen)


def _dotted(path: tuple) -> str:
    """('steps', 2, 'prompt') -> 'steps[2].prompt'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
            raise UsageError(f"--set {key}: {display} has no '{_dotted(path + (part,))}'; "
                             f"check the key path") from None
        path += (part,)
    last = parts[-1]
    settable = (isinstance(target, dict) and isinstance(last, str)) or (
        isinstance(target, list) and isinstance(last, int) and last < len(target))
    if not settable:
        raise UsageError(f"--set {key}: {display} has no '{_dotted(path + (last,))}' to set; "
                         f"check the key path")
    target[last] = value
    lines[path + (last,)] = None


# -- validation --------------------------------------------------------------------------------
class _Validator:
    """Checks a parsed document and builds the ``Recipe``; the first problem raises."""
    def __init__(self, path: Path, display: str, lines: dict, manager) -> None:
        self.path, self.display, self.lines, self.manager = path, display, lines, manager
        self.base = path.resolve().parent
        self.step_names: list[Any] = []

    def fail(self, path: tuple, message: str) -> typing.NoReturn:
        """Raise for ``path``, at its own line or the nearest enclosing one that has a line."""
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        where = f"{self.display}:{line}" if line else f"{self.display} (--set)"
        raise RecipeError(f"{where}: {_dotted(path) + ': ' if path else ''}{message}")

    def recipe(self, data: Any) -> Recipe:
        if not isinstance(data, dict):
            kind = "a list" if isinstance(data, list) else f"the value {_show(data)}"
            self.fail((), f"a recipe is a mapping with 'version' and 'steps', not {kind}; "
                          f"start the file with 'version: {RECIPE_VERSION}'")
        self.unknown_keys(data, (), TOP_LEVEL_KEYS)
        if "version" not in data:
            self.fail(("version",), f"field required; add 'version: {RECIPE_VERSION}' at the "
                                    f"top")
        if data["version"] != RECIPE_VERSION or isinstance(data["version"], bool):
            self.fail(("version",), f"unsupported version {_show(data['version'])}; this "
                                    f"flipsketch reads version {RECIPE_VERSION}")
        for key in ("description", "model", "device", "dtype"):
            if data.get(key) is not None:
                self.typed((key,), data[key], str)
        self.machine(data)
        model = self.model(("model",), data.get("model") or DEFAULT_MODEL)

        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            self.fail(("defaults",), "expected a mapping of sampler options, e.g. 'seed: 0'")
        options = sampler_options()
        self.unknown_keys(defaults, ("defaults",), options)
        for key, value in defaults.items():
            self.typed(("defaults", key), value, options[key])

        if data.get("steps") is None:
            self.fail(("steps",), "field required; add a list of steps")
        if not isinstance(data["steps"], list) or not data["steps"]:
            self.fail(("steps",), "expected a non-empty list of steps")
        self.step_names = [s.get("name") if isinstance(s, dict) else None for s in data["steps"]]
        steps: list[Step] = []
        for i, step_data in enumerate(data["steps"]):
            steps.append(self.step(i, step_data, steps, defaults))
        return Recipe(self.path, self.display, data.get("description") or "", model,
                      data.get("device"), data.get("dtype"), steps)

    def unknown_keys(self, mapping: dict, path: tuple, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else \
                    f"allowed keys: {', '.join(sorted(allowed))}"
                self.fail(path + (key,), f"unknown key; {hint}")

    def typed(self, path: tuple, value: Any, expected: Any) -> Any:
        problem = _type_problem(value, expected)
        if problem:
            self.fail(path, problem)
        return float(value) if expected is float else value

    def base_for(self, path: tuple) -> Path:
        """What a relative path at ``path`` is relative to: the recipe's folder, or the current
        folder for a value given with ``--set`` (typed where the user stands)."""
        return Path.cwd() if path in self.lines and self.lines[path] is None else self.base

    def model(self, path: tuple, value: str) -> str:
        """A local folder when there is one, else the preset name or hub id as given."""
        folder = self.base_for(path) / value
        return str(folder.resolve()) if folder.is_dir() else value

    def machine(self, data: dict) -> None:
        """The sketch model, device and dtype are known now: check them before any step."""
        for key, check in (("model", lambda: resolve_model(self.model(("model",), data.get(
                                "model") or DEFAULT_MODEL))),
                           ("device", lambda: resolve_device(data.get("device"))),
                           ("dtype", lambda: resolve_dtype(data.get("dtype"),
                                                           resolve_device(data.get("device"))))):
            try:
                check()
            except UsageError as exc:
                self.fail((key,), str(exc))

    def step(self, i: int, data: Any, earlier: list[Step], defaults: dict) -> Step:
        path = ("steps", i)
        if not isinstance(data, dict):
            self.fail(path, "a step is a mapping with 'name', 'type' and the type's keys")
        for key in ("name", "type"):
            if key not in data:
                self.fail(path + (key,), "field required")
            self.typed(path + (key,), data[key], str)
        name, type_name = data["name"], data["type"]
        if not _STEP_NAME.fullmatch(name):
            self.fail(path + ("name",), f"'{name}' is not a valid step name; use letters, "
                                        f"digits, '-' and '_', starting with a letter")
        if any(s.name == name for s in earlier):
            self.fail(path + ("name",), f"step name '{name}' is used twice; names are unique")
        registry = self.manager.registry("recipe_step")
        if type_name not in registry.impls:
            close = difflib.get_close_matches(type_name, list(registry.impls), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            self.fail(path + ("type",), f"unknown step type '{type_name}'; {hint}known types: "
                                        f"{', '.join(sorted(registry.impls))}")
        step_type: StepType = registry.impls[type_name]
        options = sampler_options() if step_type.sampler else {}
        own = {k: v for k, v in data.items() if k not in ("name", "type")}
        self.unknown_keys(own, path, [*step_type.fields, *options])

        params: dict[str, Any] = {}
        for key, spec in step_type.fields.items():
            if own.get(key) is None:
                if spec.required:
                    self.fail(path + (key,), "field required")
                params[key] = spec.default
            else:
                params[key] = self.value(path + (key,), own[key], spec, earlier)
        step = Step(name, type_name, step_type, params)

        if step_type.sampler:
            for key in options:
                if key in own:
                    self.typed(path + (key,), own[key], options[key])
            step.options = {**defaults, **step_type.defaults,
                            **{k: v for k, v in own.items() if k in options}}
            try:
                step.settings, step.stages = sampler_call(step.options, self.manager)
            except StepError as exc:  # point at the key where the bad value was written
                where = path + (exc.key,) if exc.key in own else \
                    ("defaults", exc.key) if exc.key in defaults else path
                self.fail(where, str(exc))
        if step_type.check is not None:
            try:
                step_type.check(step)
            except StepError as exc:
                self.fail(path + ((exc.key,) if exc.key else ()), str(exc))

        # How many clips: one per sample for sampler steps, else as many as the input has.
        input_clips = next((s.clips for s in earlier if s.name in step.inputs), 1)
        if not step_type.makes_frames:
            step.clips = 0
        elif step_type.sampler:
            step.clips = step.settings.samples
        else:
            step.clips = input_clips
        for key, spec in step_type.fields.items():
            if spec.kind != "output" or params[key] is None:
                continue
            for out in map(str, numbered_paths(params[key], input_clips, self.manager)):
                owner = next((s.name for s in earlier if out in s.outputs), None)
                if owner is not None or out in step.outputs:
                    self.fail(path + (key,), f"'{out}' is also written by step "
                                             f"'{owner or name}'; give each output its own name")
                step.outputs.append(out)
        return step

    def value(self, path: tuple, value: Any, spec: Field, earlier: list[Step]) -> Any:
        """A step key's value, type-checked and resolved according to its field's kind."""
        value = self.typed(path, value, spec.type)
        if spec.kind == "file":
            value = (self.base_for(path) / value).resolve()
            if not value.is_file():
                self.fail(path, f"file not found: {value} (paths in a recipe are relative to "
                                f"its file, paths given with --set to the current folder)")
        elif spec.kind == "output":
            value = self.output_path(path, value)
        elif spec.kind == "step":
            source = next((s for s in earlier if s.name == value), None)
            if source is None:
                where = "this step or a later one; a step can only use earlier steps" \
                    if value in self.step_names[path[1]:] else "not the name of an earlier step"
                self.fail(path, f"'{value}' is {where}")
            if not source.clips:
                self.fail(path, f"step '{value}' only writes files; name a step that makes "
                                f"frames")
        elif spec.kind == "model":
            value = self.model(path, value)
        elif spec.kind.startswith("stage:"):
            try:
                self.manager.get(spec.kind.removeprefix("stage:"), value)
            except FlipSketchError as exc:
                self.fail(path, str(exc))
        problem = spec.check(value) if spec.check is not None else None
        if problem:
            self.fail(path, problem)
        return value

    def output_path(self, path: tuple, value: str) -> str:
        """A relative POSIX path that stays inside OUTDIR and that some writer can write."""
        if PurePosixPath(value).is_absolute() or PureWindowsPath(value).anchor:
            self.fail(path, f"'{value}' is an absolute path; outputs stay inside OUTDIR, so "
                            f"give a relative path such as out.gif")
        parts = [p for p in PurePosixPath(value.replace("\\", "/")).parts if p != "."]
        if ".." in parts:
            self.fail(path, f"'{value}' leaves OUTDIR through '..'; give a path inside it")
        if not parts:
            self.fail(path, "empty output path; name a file such as out.gif")
        if parts[0] == CACHE_DIR:
            self.fail(path, f"'{value}' is inside the cache folder {CACHE_DIR}/; pick another "
                            f"path")
        if claimed_suffix(parts[-1], self.manager.registry("writer")) is None:
            known = sorted({s for w in self.manager.registry("writer").impls.values()
                            for s in w.suffixes})
            self.fail(path, f"no writer for '{parts[-1]}'; end the name with one of "
                            f"{', '.join(known)}, or no suffix for a folder of PNG frames")
        return "/".join(parts)


def _type_problem(value: Any, expected: Any) -> str | None:
    """Why ``value`` does not fit the field type ``expected``, or None if it does."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(expected) if m is not type(None)]
        if value is None and len(members) < len(typing.get_args(expected)):
            return None
        problems = [_type_problem(value, m) for m in members]
        return None if None in problems else problems[0]
    if origin is typing.Literal:
        choices = typing.get_args(expected)
        return None if value in choices else \
            f"expected one of {', '.join(map(str, choices))}, got {_show(value)}"
    if origin is list:
        (item,) = typing.get_args(expected)
        if not isinstance(value, list) or not value:
            return f"expected a non-empty list of {_type_name(item)} values, got {_show(value)}"
        problems = [p for p in (_type_problem(v, item) for v in value) if p]
        return f"every item must be {_type_name(item)}: {problems[0]}" if problems else None
    ok = {
        str: isinstance(value, str),
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
    }.get(expected, True)
    if ok:
        return None
    quote = "; put it in quotes" if expected is str and isinstance(value, (bool, int, float)) \
        else ""
    return f"expected {_type_name(expected)}, got {_show(value)}{quote}"


def _type_name(expected: Any) -> str:
    return {str: "a string", bool: "true or false", int: "a whole number",
            float: "a number"}.get(expected, str(expected))


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing" if value is None else repr(value)


def sampler_options() -> dict[str, Any]:
    """The sampler options a recipe accepts, with their types.

    They are the fields of ``flipsketch.api.SamplerSettings`` (``lambda_`` is written
    ``lambda``) and the names of the inverter, aligner and composer to use.
    """
    hints = typing.get_type_hints(SamplerSettings)
    options = {f.name.rstrip("_"): hints[f.name] for f in dataclasses.fields(SamplerSettings)}
    options.update({key: str for key in STAGE_OPTIONS})
    return options


# ``SamplerSettings.validate`` words its messages for the command line.
_CLI_FLAGS = {"--frames": "num_frames", "--steps": "num_inference_steps",
              "--guidance": "guidance_scale", "--lambda": "lambda"}


def sampler_call(options: dict[str, Any], manager) -> tuple[Any, dict[str, str | None]]:
    """(SamplerSettings, stage names) for merged sampler options.

    Bad values raise ``StepError`` naming the recipe key, so a typo in a long recipe costs
    nothing: stage names are looked up now, not minutes into the run.
    """
    names = {f.name.rstrip("_"): f.name for f in dataclasses.fields(SamplerSettings)}
    settings = SamplerSettings(**{names[k]: v for k, v in options.items() if k in names})
    try:
        settings.validate()
    except UsageError as exc:
        def key_of(flag: str) -> str:
            return _CLI_FLAGS.get(flag, flag[2:].replace("-", "_"))

        message = re.sub(r"--[a-z0-9-]+", lambda m: key_of(m.group()), str(exc))
        first = re.match(r"--[a-z0-9-]+", str(exc))  # the flag the message is about
        key = key_of(first.group()) if first else None
        raise StepError(key if key in options else None, message) from None
    stages = {key: options[key] for key in STAGE_OPTIONS if options.get(key) is not None}
    for stage, name in stages.items():
        try:
            manager.get(stage, name)
        except FlipSketchError as exc:
            raise StepError(stage, str(exc)) from None
    return settings, stages


# -- the cache ---------------------------------------------------------------------------------
def step_keys(recipe: Recipe) -> dict[str, str]:
    """Each step's cache key: a hash of all it depends on, its inputs' keys included, so that
    a change anywhere reaches every step downstream of it."""
    keys: dict[str, str] = {}
    model = _model_fingerprint(recipe.model)
    for step in recipe.steps:
        params = {}
        for key, spec in step.step_type.fields.items():
            value = step.params.get(key)
            if spec.kind == "file" and value is not None:
                value = _fingerprint(Path(value))
            elif spec.kind == "model" and value is not None:
                value = _model_fingerprint(value)
            params[key] = value
        material = {
            "flipsketch": __version__, "type": step.type, "params": params,
            "options": step.options, "inputs": [keys[name] for name in step.inputs],
            "model": model if step.step_type.sampler else None,
            "device": [recipe.device, recipe.dtype], "outputs": step.outputs,
        }
        blob = json.dumps(material, sort_keys=True, default=str).encode()
        keys[step.name] = hashlib.sha256(blob).hexdigest()
    return keys


def _fingerprint(path: Path) -> str | None:
    """Content hash of a file, or of a folder's files and their names; None if missing."""
    digest = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{_fingerprint(file)}\0".encode())
    else:
        return None
    return digest.hexdigest()


def _model_fingerprint(model: str) -> str:
    """A local model folder (a preset's too) by its files' names, sizes and times (hashing
    gigabytes of weights on every run would cost more than it saves); a hub id by its name."""
    try:
        folder = Path(resolve_model(model).source)
    except UsageError:  # a video model id: the backbone does not know it
        folder = Path(model)
    if not folder.is_dir():
        return model
    listing = sorted((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps([model, listing]).encode()).hexdigest()


class StepCache:
    """``OUTDIR/.flipsketch``: each step's frames (``NAME.npz``) and ``manifest.json``, which
    holds each step's key and a content hash of every file the recipe wrote, so a re-run can
    tell its own earlier outputs (replaced freely) from the user's files (kept unless --force).
    """

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.dir = outdir / CACHE_DIR
        self.manifest: dict[str, Any] = {"version": 1, "steps": {}}
        try:
            loaded = json.loads((self.dir / "manifest.json").read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and isinstance(loaded.get("steps"), dict):
                self.manifest = loaded
        except (OSError, ValueError):
            pass  # no cache yet, or a damaged one: everything runs again

    def valid(self, step: Step, key: str) -> bool:
        """Whether ``step`` ran before with this key and its results are all still there."""
        entry = self.manifest["steps"].get(step.name)
        if not entry or entry.get("key") != key:
            return False
        if step.clips and not (self.dir / f"{step.name}.npz").is_file():
            return False
        files = entry.get("files", {})
        return all(out in files and _fingerprint(self.outdir / out) == files[out]
                   for out in step.outputs)

    def owns(self, out: str) -> bool:
        """Whether the file at ``out`` is exactly as a previous run of a recipe wrote it."""
        current = _fingerprint(self.outdir / out)
        return any(entry.get("files", {}).get(out) == current
                   for entry in self.manifest["steps"].values())

    def load(self, name: str) -> list[Clip]:
        fps = self.manifest["steps"][name]["fps"]
        with np.load(self.dir / f"{name}.npz") as data:
            return [Clip(data[f"clip{i}"], rate) for i, rate in enumerate(fps)]

    def store(self, step: Step, key: str, clips: list[Clip] | None) -> None:
        """Record a finished step; each file appears atomically, so an interrupted store
        leaves the previous state."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if clips:
            arrays = {f"clip{i}": np.asarray(c.frames, np.float32) for i, c in enumerate(clips)}
            _atomic_write(self.dir / f"{step.name}.npz",
                          lambda f: np.savez_compressed(f, **arrays))
        self.manifest["steps"][step.name] = {
            "key": key, "type": step.type, "fps": [c.fps for c in clips or []],
            "frames": [len(c.frames) for c in clips or []],
            "files": {out: _fingerprint(self.outdir / out) for out in step.outputs},
        }
        text = json.dumps(self.manifest, indent=1).encode()
        _atomic_write(self.dir / "manifest.json", lambda f: f.write(text))


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    """``write(file)`` into a temporary sibling, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- running -----------------------------------------------------------------------------------
@dataclass
class StepReport:
    """What happened to one step: ``ran``, ``cached`` (skipped, unchanged) or ``planned``
    (a dry run's "would run")."""

    name: str
    type: str
    status: str
    seconds: float = 0.0
    frames: list[int] = field(default_factory=list)  # frames per clip made
    outputs: list[str] = field(default_factory=list)  # files written, relative to OUTDIR


class Reporter:
    """What the runner tells its caller while it works; the CLI draws it with rich."""
    def step_started(self, step: Step, cached: bool) -> None:
        pass

    def step_progress(self, done: int, total: int) -> None:
        pass

    def step_finished(self, report: StepReport) -> None:
        pass


@dataclass
class StepContext:
    """What a running step may use besides its own keys."""
    recipe: Recipe
    outdir: Path
    manager: Any
    inputs: dict[str, list[Clip]]  # frames of the steps it names, by step name
    progress: Callable[[int, int], None]  # (done, total) for the progress bar
    models: dict[Any, Any]  # loaded models, shared by the steps of one run

    def pipeline(self):
        """The recipe's FlipSketch pipeline, loaded on first use (cached runs never load it)."""
        if "flipsketch" not in self.models:
            self.models["flipsketch"] = load_pipeline(
                self.recipe.model, device=self.recipe.device, dtype=self.recipe.dtype,
                manager=self.manager)
        return self.models["flipsketch"]

    def video_pipeline(self, models):
        """The sketch-to-video pipeline for ``models``, loaded once per run."""
        if models not in self.models:
            self.models[models] = load_video_pipeline(models, self.recipe.device,
                                                      self.recipe.dtype)
        return self.models[models]


def run_recipe(recipe: Recipe, outdir: str | Path, *, force: bool = False, fresh: bool = False,
               dry_run: bool = False, reporter: Reporter | None = None,
               manager=None) -> list[StepReport]:
    """Run the steps in order, skipping those whose cache entry is still valid.

    Before any step runs, every output that would be replaced is checked: a file this recipe
    wrote earlier (per the manifest) may be replaced, anything else needs ``force``. A failing
    step raises a ``FlipSketchError`` naming it; earlier steps' outputs and cache stay, so a
    re-run resumes there. ``dry_run`` plans and reports without writing anything.
    """
    manager = _manager(manager)
    reporter = reporter or Reporter()
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"output folder '{outdir}' is a file; pass a folder with -o")
    cache = StepCache(outdir)
    keys = step_keys(recipe)
    cached = {s.name: not fresh and cache.valid(s, keys[s.name]) for s in recipe.steps}
    for step in recipe.steps:
        if not cached[step.name]:
            for out in step.outputs:
                _check_replaceable(outdir, out, cache, force)
    if dry_run:
        return [StepReport(s.name, s.type, "cached" if cached[s.name] else "planned",
                           outputs=s.outputs) for s in recipe.steps]

    outdir.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[Clip]] = {}
    models: dict[Any, Any] = {}
    reports = []
    for step in recipe.steps:
        reporter.step_started(step, cached[step.name])
        if cached[step.name]:
            report = StepReport(step.name, step.type, "cached",
                                frames=cache.manifest["steps"][step.name]["frames"],
                                outputs=step.outputs)
        else:
            inputs = {name: made[name] if name in made else cache.load(name)
                      for name in step.inputs}
            ctx = StepContext(recipe, outdir, manager, inputs, reporter.step_progress, models)
            start = time.monotonic()
            try:
                clips = step.step_type.run(ctx, step)
            except (Exception, KeyboardInterrupt) as exc:
                raise _step_failed(step, exc) from exc
            if len(clips or []) != step.clips:  # later steps' output names rely on the count
                raise _step_failed(step, RuntimeError(
                    f"it made {len(clips or [])} clips where {step.clips} were expected"))
            cache.store(step, keys[step.name], clips)
            made[step.name] = clips or []
            report = StepReport(step.name, step.type, "ran", time.monotonic() - start,
                                frames=[len(c.frames) for c in clips or []],
                                outputs=step.outputs)
        reports.append(report)
        reporter.step_finished(report)
    return reports


def _check_replaceable(outdir: Path, out: str, cache: StepCache, force: bool) -> None:
    target = outdir / out
    if not target.resolve().is_relative_to(outdir.resolve()):
        raise UsageError(f"output '{out}' resolves outside '{outdir}' (through a link); "
                         f"remove the link or pick another OUTDIR")
    if (target.exists() or target.is_symlink()) and not force and not cache.owns(out):
        raise UsageError(f"'{target}' exists and was not written by this recipe; pass --force "
                         f"to overwrite it, or pick another OUTDIR with -o")


def _step_failed(step: Step, exc: BaseException) -> FlipSketchError:
    if isinstance(exc, KeyboardInterrupt):
        reason, code = "interrupted", 130
    else:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        code = getattr(exc, "exit_code", 1)
    error = FlipSketchError(f"step '{step.name}' ({step.type}) failed: {reason}; outputs of "
                            f"earlier steps are kept, and a re-run resumes from this step")
    error.exit_code = code
    return error


# -- shared by the built-in steps --------------------------------------------------------------
def _sample(ctx: StepContext, step: Step, prompt: str, sketch, settings=None,
            progress: Callable[[int, int], None] | None = None) -> list[Clip]:
    """One ``api.animate`` call with the step's settings and stages; one clip per sample."""
    report = progress or ctx.progress

    def on_progress(stage: str, done: int, total: int) -> None:
        if stage == "sampling":  # the inversion before it is one short step
            report(done, total)

    animations = animate(ctx.pipeline(), prompt, sketch, settings or step.settings,
                         **step.stages, progress=on_progress, manager=ctx.manager)
    return [Clip(np.asarray(a.frames, np.float32)) for a in animations]


def continuation_sketch(ctx: StepContext, frames: np.ndarray) -> Image.Image:
    """The sketch a clip continues from: its last frame, binarized as a writer would show it.

    Decoded frames carry soft grey haze; binarizing keeps that haze from being inverted into
    the next clip and building up from clip to clip.
    """
    size = ctx.pipeline().model_resolution
    return postprocess(frames[-1:], name="binarize", size=size, manager=ctx.manager)[0]


def _to_images(frames: np.ndarray) -> list[Image.Image]:
    """(F, H, W) grey or (F, H, W, 3) RGB floats -> PIL images ("L" or "RGB")."""
    if frames.ndim == 3:
        return array_to_images(frames)
    pixels = np.rint(np.clip(frames, 0.0, 1.0) * 255).astype(np.uint8)  # (F, H, W, 3)
    return [Image.fromarray(frame, mode="RGB") for frame in pixels]


def _to_array(images: list[Image.Image]) -> np.ndarray:
    """The inverse of ``_to_images``."""
    if images[0].mode == "L":
        return images_to_array(images)
    return np.stack([np.asarray(im.convert("RGB")) for im in images]).astype(np.float32) / 255


def _positive(value) -> str | None:
    return None if value > 0 else f"must be positive, got {value}"


def _text(value: str) -> str | None:
    return None if value.strip() else "is empty; write some text"


def _sketch_file(path: Path) -> str | None:
    try:
        load_sketch(path)
    except UsageError as exc:
        return str(exc)
    return None


def _font_file(path: Path) -> str | None:
    try:
        ImageFont.truetype(str(path), 12)
    except OSError as exc:
        return f"cannot load font {path} ({exc}); pass a .ttf or .otf file"
    return None


# -- animate, generate, word -------------------------------------------------------------------
def _one_sketch(step: Step) -> None:
    if step.params.get("sketch") is not None and step.params.get("input") is not None:
        raise StepError("input", "give either a sketch file or an input step, not both")


def _animate(ctx: StepContext, step: Step) -> list[Clip]:
    sketch = step.params["sketch"]
    if sketch is None:
        sketch = continuation_sketch(ctx, ctx.inputs[step.params["input"]][0].frames)
    return _sample(ctx, step, step.params["prompt"], sketch)


def _check_animate(step: Step) -> None:
    _one_sketch(step)
    if step.params["sketch"] is None and step.params["input"] is None:
        raise StepError("sketch", "field required; or set input to an earlier step to start "
                                  "from its last frame")


def _generate(ctx: StepContext, step: Step) -> list[Clip]:
    return _sample(ctx, step, step.params["prompt"], None)


def render_text(text: str, size: int = 512, font: str | Path | None = None) -> Image.Image:
    """``text`` as a line drawing: outlined letters, dark on white, centred in a square.

    Letters are drawn as outlines, not solid shapes: the model knows drawings made of strokes,
    and an outline is one, while a filled glyph is a blob. The font (Pillow's scalable default,
    or a .ttf/.otf file) is sized so the text fills 80 % of the square.
    """
    stroke = max(1, size // 128)
    canvas = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(canvas)

    def font_of(px: int):
        return ImageFont.truetype(str(font), px) if font else ImageFont.load_default(size=px)

    def box(px: int) -> tuple[float, float, float, float]:
        return draw.multiline_textbbox((0, 0), text, font=font_of(px), stroke_width=stroke,
                                       align="center")

    lo, hi = 4, size  # binary search for the largest font size that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        left, top, right, bottom = box(mid)
        fits = right - left <= 0.8 * size and bottom - top <= 0.8 * size
        lo, hi = (mid, hi) if fits else (lo, mid - 1)
    left, top, right, bottom = box(lo)
    origin = ((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top)
    draw.multiline_text(origin, text, font=font_of(lo), fill=255, stroke_width=stroke,
                        stroke_fill=0, align="center")
    return canvas


def _word(ctx: StepContext, step: Step) -> list[Clip]:
    sketch = render_text(step.params["text"], font=step.params["font"])
    return _sample(ctx, step, step.params["prompt"], sketch)


# -- extrapolate -------------------------------------------------------------------------------
def _check_extrapolate(step: Step) -> None:
    _one_sketch(step)
    prompts, seeds = step.params["prompts"], step.params["seeds"]
    if seeds is not None and len(seeds) != len(prompts):
        raise StepError("seeds", f"has {len(seeds)} seeds for {len(prompts)} prompts; give one "
                                 f"seed per prompt, or none to use seed, seed+1, ...")
    if step.settings.samples != 1:
        raise StepError("samples", "extrapolate continues one clip; set samples to 1")


def _extrapolate(ctx: StepContext, step: Step) -> list[Clip]:
    """One clip per prompt, each starting from the previous clip's last frame (paper Fig. 6).

    The segments are stitched with each boundary frame once: segment k+1's first frame is the
    model's redrawing of segment k's last frame, so it is dropped, and the last frame of
    segment k is the frame segment k+1 starts from.
    """
    prompts = step.params["prompts"]
    seeds = step.params["seeds"] or [step.settings.seed + k for k in range(len(prompts))]
    sketch = step.params["sketch"]
    if sketch is None and step.params["input"] is not None:
        sketch = continuation_sketch(ctx, ctx.inputs[step.params["input"]][0].frames)
    pieces: list[np.ndarray] = []
    for k, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
        def progress(done: int, total: int, k: int = k) -> None:
            ctx.progress(k * total + done, len(prompts) * total)

        settings = dataclasses.replace(step.settings, seed=seed)
        (clip,) = _sample(ctx, step, prompt, sketch, settings, progress)
        pieces.append(clip.frames if k == 0 else clip.frames[1:])
        sketch = continuation_sketch(ctx, clip.frames)
    return [Clip(np.concatenate(pieces))]


# -- interpolate -------------------------------------------------------------------------------
def _interpolate(ctx: StepContext, step: Step) -> list[Clip]:
    """Each clip at ``factor`` times the frame rate; it plays for the same time."""
    interpolator = ctx.manager.get("interpolator", step.params["interpolator"])
    factor = step.params["factor"]
    clips = ctx.inputs[step.params["input"]]
    out = []
    for i, clip in enumerate(clips):
        ctx.progress(i, len(clips))
        frames = interpolator(_to_images(clip.frames), factor)
        out.append(Clip(_to_array(frames), clip.fps * factor))
    ctx.progress(len(clips), len(clips))
    return out


# -- video -------------------------------------------------------------------------------------
def _check_video(step: Step) -> None:
    if step.params["size"] % 8:
        raise StepError("size", f"must be a multiple of 8, got {step.params['size']}; use e.g. "
                                f"512")


def _video(ctx: StepContext, step: Step) -> list[Clip]:
    """Each sketch clip as a photo-real video (paper Sec. 5.3), one video frame per frame."""
    p = step.params
    chosen = {k: p[k] for k in ("base", "motion_adapter", "controlnet") if p[k] is not None}
    pipe = ctx.video_pipeline(VideoModels(**chosen))
    out = []
    for clip in ctx.inputs[p["input"]]:
        if clip.frames.ndim != 3:
            raise UsageError(f"step '{p['input']}' made colour frames; the video step needs "
                             f"sketch frames as its input")
        sketches = postprocess(clip.frames, name="binarize", size=p["size"], manager=ctx.manager)
        frames = sketch_to_video(
            pipe, sketches, p["prompt"], negative_prompt=p["negative_prompt"],
            num_inference_steps=p["num_inference_steps"], guidance_scale=p["guidance_scale"],
            conditioning_scale=p["conditioning_scale"], size=p["size"], seed=p["seed"],
            progress=ctx.progress)
        out.append(Clip(frames, clip.fps))
    return out


# -- write -------------------------------------------------------------------------------------
def _write(ctx: StepContext, step: Step) -> None:
    """Each input clip through a writer: sketch frames post-processed (binarized by default),
    colour frames resized; one file per clip (see ``writers.numbered_paths``)."""
    p = step.params
    for clip, out in zip(ctx.inputs[p["input"]], step.outputs, strict=True):
        if clip.frames.ndim == 3:
            images = postprocess(clip.frames, name=p["postprocess"], size=p["size"],
                                 transparent=p["transparent"], manager=ctx.manager)
        else:
            images = [im.resize((p["size"], p["size"]), Image.Resampling.LANCZOS)
                      for im in _to_images(clip.frames)]
        target = ctx.outdir / out
        target.parent.mkdir(parents=True, exist_ok=True)
        # The runner has already refused to replace anything this recipe did not write.
        save_frames(images, target, fps=p["fps"] or clip.fps, force=True, manager=ctx.manager)


def write_contact_sheet(frames: list[Image.Image], path: Path, fps: float) -> None:
    """Every frame of a clip in one PNG, left to right, each labelled with its number and time,
    so that a result can be judged at a glance. Writer ``contact-sheet``, for names ending in
    ``.contact.png`` (``.sheet.png`` is the spritesheet plugin's: exact tiles for game engines,
    where this one is for people)."""
    columns = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / columns)
    cell = min(256, max(f.width for f in frames))
    font = ImageFont.load_default(size=max(10, cell // 12))
    label, pad = max(14, cell // 8), max(4, cell // 32)
    sheet = Image.new("RGB", (pad + columns * (cell + pad), pad + rows * (cell + label + pad)),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, frame in enumerate(frames):
        x = pad + (i % columns) * (cell + pad)
        y = pad + (i // columns) * (cell + label + pad)
        rgba = frame.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        thumb = Image.alpha_composite(paper, rgba).convert("RGB")
        thumb.thumbnail((cell, cell), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x, y))
        draw.rectangle((x - 1, y - 1, x + thumb.width, y + thumb.height), outline=(180,) * 3)
        draw.text((x, y + cell + 2), f"{i}  ({i / fps:.2f} s)", fill=(0, 0, 0), font=font)
    sheet.save(path, format="PNG")


# -- registration ------------------------------------------------------------------------------
_PROMPT = Field(str, required=True, check=_text)
_INPUT = Field(str, required=True, kind="step")
_SKETCH = Field(str, kind="file", check=_sketch_file)

BUILTIN_STEPS: dict[str, StepType] = {
    "animate": StepType(
        _animate, {"prompt": _PROMPT, "sketch": _SKETCH, "input": Field(str, kind="step")},
        "animate a sketch file, or an earlier step's last frame, as the prompt says",
        sampler=True, check=_check_animate),
    "generate": StepType(
        _generate, {"prompt": _PROMPT},
        "a sketch animation from the prompt alone (no input sketch)", sampler=True),
    "word": StepType(
        _word, {"text": Field(str, required=True, check=_text), "prompt": _PROMPT,
                "font": Field(str, kind="file", check=_font_file)},
        "draw text as outlined letters and animate it with temporal composition off, so the "
        "letters can morph (paper Sec. 5.2)", sampler=True, defaults={"compose": "spatial"}),
    "extrapolate": StepType(
        _extrapolate, {"prompts": Field(list[str], required=True), "sketch": _SKETCH,
                       "input": Field(str, kind="step"), "seeds": Field(list[int])},
        "a long animation from a list of prompts, each clip continuing from the last frame of "
        "the one before (paper Fig. 6)", sampler=True, check=_check_extrapolate),
    "interpolate": StepType(
        _interpolate, {"input": _INPUT,
                       "factor": Field(int, default=2, check=_positive),
                       "interpolator": Field(str, default="flow", kind="stage:interpolator")},
        "multiply the frame rate by a factor with an interpolator plugin (default: flow)"),
    "video": StepType(
        _video, {
            "input": _INPUT, "prompt": _PROMPT, "negative_prompt": Field(str, default=""),
            # None: the defaults of flipsketch.video.VideoModels
            "base": Field(str, kind="model"), "motion_adapter": Field(str, kind="model"),
            "controlnet": Field(str, kind="model"),
            "num_inference_steps": Field(int, default=25, check=_positive),
            "guidance_scale": Field(float, default=7.5),
            "conditioning_scale": Field(float, default=1.0),
            "size": Field(int, default=512, check=_positive),
            "seed": Field(int, default=0),
        },
        "turn a sketch animation into a photo-real video with a scribble ControlNet and "
        "AnimateDiff (paper Sec. 5.3)", check=_check_video),
    "write": StepType(
        _write, {
            "input": _INPUT, "path": Field(str, required=True, kind="output"),
            "fps": Field(float, check=_positive),
            "postprocess": Field(str, default="binarize", kind="stage:postprocessor"),
            "size": Field(int, default=512, check=_positive),
            "transparent": Field(bool, default=False),
        },
        "save frames with any writer (.gif .mp4 .webp .png/.apng, a folder of PNGs, or a "
        ".contact.png contact sheet)"),
}


@hookimpl
def register_recipe_steps(register) -> None:
    for name, step_type in BUILTIN_STEPS.items():
        register(name, step_type)


@hookimpl
def register_writers(register) -> None:
    register("contact-sheet", Writer("contact-sheet", (".contact.png",), write_contact_sheet))
