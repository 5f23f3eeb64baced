"""Checking a whole recipe before anything runs: one line ``file:line: key.path: problem``."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from flipsketch.api import OPTIONS, SamplerSettings, check_request, describe
from flipsketch.devices import resolve_device, resolve_dtype
from flipsketch.errors import FlipSketchError, SettingsError, UsageError
from flipsketch.frames.examples import is_example, resolve_sketch
from flipsketch.frames.writers import claimed_suffix, numbered_paths
from flipsketch.models.presets import default_model, resolve_model
from flipsketch.recipes.schema import (
    CACHE_DIR,
    RECIPE_VERSION,
    STAGE_OPTIONS,
    STEP_NAME,
    TOP_LEVEL_KEYS,
    Field,
    Recipe,
    RecipeError,
    Step,
    StepError,
    StepType,
    dotted,
)
from flipsketch.settings import find_option


# -- validation --------------------------------------------------------------------------------
class Validator:
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
        raise RecipeError(f"{where}: {dotted(path) + ': ' if path else ''}{message}")

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
        model = self.model(("model",), data.get("model") or default_model())

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
        problem = type_problem(value, expected)
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
                                "model") or default_model()))),
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
        if not STEP_NAME.fullmatch(name):
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
        if spec.kind == "file" and is_example(value):  # a drawing shipped with the package
            try:
                value = resolve_sketch(value)
            except UsageError as exc:
                self.fail(path, str(exc))
        elif spec.kind == "file":
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
        try:
            return relative_output(value, self.manager)
        except ValueError as exc:
            self.fail(path, str(exc))


def relative_output(value: str, manager, writer: str | None = None) -> str:
    """``value`` as a relative POSIX path inside OUTDIR that some writer can write (``writer``
    when one is named, else the one its suffix picks); raises ``ValueError`` with the problem
    and the fix otherwise.

    The one rule for output names given in a file (recipes, ``flipsketch batch`` manifests):
    no absolute paths, no way out through '..', nothing inside flipsketch's own folder
    ``CACHE_DIR``.
    """
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).anchor:
        raise ValueError(f"'{value}' is an absolute path; outputs stay inside OUTDIR, so "
                         f"give a relative path such as out.gif")
    parts = [p for p in PurePosixPath(value.replace("\\", "/")).parts if p != "."]
    if ".." in parts:
        raise ValueError(f"'{value}' leaves OUTDIR through '..'; give a path inside it")
    if not parts:
        raise ValueError("empty output path; name a file such as out.gif")
    if parts[0] == CACHE_DIR:
        raise ValueError(f"'{value}' is inside the cache folder {CACHE_DIR}/; pick another "
                         f"path")
    if writer is None and claimed_suffix(parts[-1], manager.registry("writer")) is None:
        known = sorted({s for w in manager.registry("writer").impls.values()
                        for s in w.suffixes})
        raise ValueError(f"no writer for '{parts[-1]}'; end the name with one of "
                         f"{', '.join(known)}, or no suffix for a folder of PNG frames")
    return "/".join(parts)


def type_problem(value: Any, expected: Any) -> str | None:
    """Why ``value`` does not fit the field type ``expected``, or None if it does."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(expected) if m is not type(None)]
        if value is None and len(members) < len(typing.get_args(expected)):
            return None
        problems = [type_problem(value, m) for m in members]
        return None if None in problems else problems[0]
    if origin is typing.Literal:
        choices = typing.get_args(expected)
        return None if value in choices else \
            f"expected one of {', '.join(map(str, choices))}, got {_show(value)}"
    if origin is list:
        (item,) = typing.get_args(expected)
        if not isinstance(value, list) or not value:
            return f"expected a non-empty list of {_type_name(item)} values, got {_show(value)}"
        problems = [p for p in (type_problem(v, item) for v in value) if p]
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
    """The sampler options a recipe (and a manifest) accepts, with their types: the option
    table's sampler fields by their own names (``num_frames``; ``lambda_`` is written
    ``lambda``) and the names of the inverter, aligner and composer to use."""
    sampler = {f.name for f in dataclasses.fields(SamplerSettings)}
    return {(o.field.rstrip("_") if o.field else o.key): o.type if o.field else str
            for o in OPTIONS.values()
            if o.field in sampler or o.key in STAGE_OPTIONS}


def sampler_call(options: dict[str, Any], manager) -> tuple[Any, dict[str, str | None]]:
    """(SamplerSettings, stage names) for merged sampler options, through the library's
    pre-flight check (``preflight.check_request``).

    Bad values raise ``StepError`` naming the recipe key, so a typo in a long recipe costs
    nothing: stage names are looked up now, not minutes into the run. A stage named "none"
    is switched off in the settings, by the same rule as on the command line.
    """
    values = {find_option(k).key: v for k, v in options.items()}
    try:
        request = check_request(None, values, manager)
    except SettingsError as exc:
        key = exc.field.rstrip("_")  # the recipe key of the field, as in sampler_options
        raise StepError(key if key in options else None,
                        describe(exc, lambda field: field.rstrip("_"))) from None
    except FlipSketchError as exc:  # a stage name no registry knows
        stage = next((k for k in STAGE_OPTIONS if options.get(k) is not None
                      and f"'{options[k]}'" in str(exc)), None)
        raise StepError(stage, str(exc)) from None
    stages = {key: options[key] for key in STAGE_OPTIONS if options.get(key) is not None}
    return request.settings, stages
