"""Reading and checking a batch manifest: every row, before any job runs.

A manifest is a CSV file (a header row, then one row per job) or a JSONL file (one object per
line). Both give the same jobs: a CSV cell is text that is read as the column's type (an
empty cell: the default), a JSON value already has its type (null: the default). Every
problem is one line ``manifest.csv:LINE: column 'lambda': problem``, so a typo in row 4,000
costs seconds, not hours.

The column names are the recipes' own keys (``num_frames``, ``lambda``, ``postprocess``...),
so a user learns one vocabulary; the command line's shorter names (``frames``, ``steps``,
``guidance``, ``postprocessor``) are accepted as aliases.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flipsketch import __version__
from flipsketch.api import FALSE, OPTIONS, TRUE, SamplerSettings, check_prompt, check_size
from flipsketch.errors import FlipSketchError, SettingsError, UsageError
from flipsketch.frames.examples import is_example, resolve_sketch
from flipsketch.frames.images import check_drawing, load_sketch, warn_unless_line_art
from flipsketch.frames.writers import numbered_paths
from flipsketch.models.lora import parse_lora
from flipsketch.models.presets import default_model
from flipsketch.plugins import DEFAULT_FPS, DEFAULT_SIZE, PluginManager, StepError, get_manager

# The recipes own the vocabulary of sampler options, the rule that turns them into
# SamplerSettings and the rule for output names; a manifest uses the same ones.
from flipsketch.recipes.cache import fingerprint, model_fingerprint
from flipsketch.recipes.validation import (
    relative_output,
    sampler_call,
    sampler_options,
    type_problem,
)

# The job itself; every other column is an option (``options()``).
JOB_COLUMNS = ("sketch", "prompt", "output")
# How the frames are written, as the recipes' ``write`` step names them.
OUTPUT_OPTIONS: dict[str, Any] = {"size": int, "fps": float, "postprocess": str,
                                  "transparent": bool, "writer": str}
OUTPUT_DEFAULTS: dict[str, Any] = {"size": DEFAULT_SIZE, "fps": DEFAULT_FPS, "postprocess": None,
                                   "transparent": False, "writer": None}


def _aliases() -> dict[str, str]:
    """Every other name the option table gives an option (``frames``, ``align-lr``,
    ``postprocessor``) -> the column name used here, the recipes' (``num_frames``,
    ``align_lr``, ``postprocess``)."""
    aliases = {}
    for o in OPTIONS.values():
        if o.field is None:
            continue  # the command line's shorthands (--motion, --raw): not columns
        canonical = "postprocess" if o.field == "postprocessor" else o.field.rstrip("_")
        for name in (o.key, o.key.replace("-", "_"), *o.aliases):
            if name != canonical:
                aliases[name] = canonical
    return aliases


ALIASES = _aliases()
# What loads once per process and so cannot change from row to row.
COMMAND_LINE_ONLY = ("model", "unet", "lora", "device", "dtype", "backbone", "allow_pickle")
NO_SKETCH = ("", "none")  # a sketch cell for text-only generation


class ManifestError(UsageError):
    """A problem in a manifest, located as ``manifest.csv:LINE: column 'NAME': problem``."""


@dataclass
class Job:
    """One validated row: what to draw, how, and where to write it."""

    index: int  # 0-based position among the jobs; process index % N runs it
    line: int  # where the row is in the manifest, as errors name it
    sketch: Path | None  # None: text-only generation
    prompt: str
    output: str  # relative to OUTDIR, POSIX
    settings: SamplerSettings
    stages: dict[str, str]  # inverter / aligner / composer by name
    write: dict[str, Any]  # size, fps, postprocess, transparent
    fingerprint: str = ""  # sha256 of everything the output depends on
    outputs: list[str] = field(default_factory=list)  # one per sample, relative to OUTDIR


@dataclass(frozen=True)
class ModelChoice:
    """The model every job of a batch is drawn with, loaded once per process."""

    # FLIPSKETCH_MODEL, else `flipsketch models default`, else tiny, as for `animate`
    model: str = field(default_factory=default_model)
    unet: str | None = None
    loras: tuple[str, ...] = ()
    dtype: str | None = None
    backbone: str | None = None
    allow_pickle: bool = False

    def key(self) -> dict[str, Any]:
        """What of the choice changes the outputs, for the jobs' fingerprints, as the recipes'
        step cache sees it: a local model or UNet folder by its absolute path and its files'
        names, sizes and times (a re-exported folder in the same place is another model), a
        LoRA folder by its files' contents, a hub id by its name; flipsketch's version too."""
        unet = None
        if self.unet is not None:
            source, _, subfolder = self.unet.partition(":")
            unet = [model_fingerprint(_absolute(source)), subfolder]
        loras = []
        for value in self.loras:
            path, scale = parse_lora(value)
            loras.append([fingerprint(path) or str(path), scale])
        return {"flipsketch": __version__, "model": model_fingerprint(_absolute(self.model)),
                "unet": unet, "loras": loras, "dtype": self.dtype, "backbone": self.backbone}


def _absolute(model: str) -> str:
    """A local folder by its absolute path, so the same folder named two ways is one model;
    a preset or hub id as it is."""
    folder = Path(model)
    return str(folder.resolve()) if folder.is_dir() else model


@dataclass
class Manifest:
    path: Path
    display: str  # how messages name the file
    jobs: list[Job]


def options() -> dict[str, Any]:
    """Every option column with its type: the recipes' sampler options and the output's."""
    return {**sampler_options(), **OUTPUT_OPTIONS}


def read_manifest(path: str | Path, defaults: dict[str, Any] | None = None, *,
                  model: ModelChoice | None = None,
                  manager: PluginManager | None = None) -> Manifest:
    """Read and check every row of the manifest at ``path``; the first problem raises a
    ``ManifestError`` naming the line and the column.

    ``defaults`` are options for every row (the command line's, canonical names); a row's own
    cells win. ``model`` is what will draw (its name, fine-tunes, dtype): it goes into each
    job's fingerprint, so changing the model redoes the batch.
    """
    path = Path(path)
    display = str(path)
    manager = manager or get_manager()
    if not path.is_file():
        raise UsageError(f"manifest '{path}' does not exist; pass a .csv or .jsonl file")
    rows, header = _read_rows(path, display)
    checker = _RowChecker(path, display, defaults or {}, (model or ModelChoice()).key(),
                         manager)
    for column in header:  # a CSV's columns are named once, on its first line
        checker.known(1, column)
    jobs = [checker.job(index, line, row) for index, (line, row) in enumerate(rows)]
    if not jobs:
        raise ManifestError(f"{display}: no jobs; add one row per animation")
    return Manifest(path, display, jobs)


# -- reading rows ------------------------------------------------------------------------------
def _read_rows(path: Path, display: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """(line, {column: value}) for every row, and a CSV's header (a JSONL file has none);
    CSV values are text, JSONL values typed."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"manifest '{path}' cannot be read ({exc}); save it as UTF-8 text") \
            from None
    if path.suffix.lower() == ".jsonl":
        return _jsonl_rows(text, display), []
    if path.suffix.lower() == ".csv":
        return _csv_rows(text, display)
    raise UsageError(f"manifest '{path}' is neither .csv nor .jsonl; rename it to say which")


def _jsonl_rows(text: str, display: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{display}:{line}: not JSON ({exc.msg}); write one object "
                                f"per line, e.g. {{\"sketch\": \"fish.png\", \"prompt\": "
                                f"\"a fish swimming\"}}") from None
        if not isinstance(row, dict):
            raise ManifestError(f"{display}:{line}: expected an object with 'prompt' and "
                                f"options, got {type(row).__name__}")
        rows.append((line, row))
    return rows


def _csv_rows(text: str, display: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    reader = csv.reader(text.splitlines(keepends=True))
    header: list[str] | None = None
    rows, start = [], 1
    for cells in reader:
        line, start = start, reader.line_num + 1  # the row's first line; quoted cells span
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            for name in header:
                if header.count(name) > 1:
                    raise ManifestError(f"{display}:{line}: column '{name}' appears twice")
            continue
        if len(cells) > len(header):
            raise ManifestError(f"{display}:{line}: {len(cells)} cells for {len(header)} "
                                f"columns; quote cells that contain commas")
        rows.append((line, {name: cell for name, cell in zip(header, cells, strict=False)}))
    return rows, header or []


def parse_text(value: str, expected: Any) -> Any:
    """A CSV cell as the option type ``expected`` wants it; left as text when it is not one,
    so that the type check words the problem (``expected a whole number, got 'ten'``)."""
    members = typing.get_args(expected) if typing.get_origin(expected) in (
        typing.Union, type(int | None)) else (expected,)
    text = value.strip()
    for member in members:
        if member is bool and text.lower() in TRUE + FALSE:
            return text.lower() in TRUE
        try:
            if member is int:
                return int(text)
            if member is float:
                return float(text)
        except ValueError:
            continue
    return value


# -- checking rows -----------------------------------------------------------------------------
class _RowChecker:
    """Turns rows into jobs; remembers what earlier rows claimed (outputs, sketch hashes)."""

    def __init__(self, path: Path, display: str, defaults: dict[str, Any],
                 model_key: dict[str, Any], manager: PluginManager) -> None:
        self.base, self.display = path.resolve().parent, display
        self.defaults, self.model_key, self.manager = defaults, model_key, manager
        self.options = options()
        self.sampler_keys = frozenset(sampler_options())  # built once: get_type_hints is slow
        self.claimed: dict[str, int] = {}  # output -> line of the row that writes it
        self.hashes: dict[Path, str] = {}  # sketch -> sha256 of its bytes

    def fail(self, line: int, column: str | None, problem: str) -> typing.NoReturn:
        where = f" column '{column}':" if column else ""
        raise ManifestError(f"{self.display}:{line}:{where} {problem}")

    def job(self, index: int, line: int, row: dict[str, Any]) -> Job:
        given: dict[str, str] = {}  # canonical name -> the column the row wrote it in
        values: dict[str, Any] = {}
        for column, value in row.items():
            name = self.known(line, column)
            if name in given:
                self.fail(line, column, f"sets the same option as column '{given[name]}'; "
                                        f"keep one of them")
            given[name] = column
            if value is None or (isinstance(value, str) and not value.strip()
                                 and name != "prompt"):
                continue  # empty cell / null: the default
            if name in self.options:
                if isinstance(value, str):
                    value = parse_text(value, self.options[name])
                problem = type_problem(value, self.options[name])
                if problem:
                    self.fail(line, column, problem)
                if self.options[name] is float:
                    value = float(value)
            values[name] = value

        if "prompt" not in values:
            self.fail(line, None, "no prompt; every row needs a 'prompt' (how it should move)")
        prompt = values.pop("prompt")
        if not isinstance(prompt, str):
            self.fail(line, given["prompt"], "expected text")
        try:
            check_prompt(prompt)
        except UsageError as exc:
            self.fail(line, given["prompt"], str(exc))
        sketch = self.sketch(line, given.get("sketch"), values.pop("sketch", None))

        merged = {**OUTPUT_DEFAULTS, **self.defaults, **values}
        sampler = {k: v for k, v in merged.items() if k in self.sampler_keys}
        try:
            settings, stages = sampler_call(sampler, self.manager)
        except StepError as exc:
            column = given.get(exc.key) if exc.key else None
            problem = str(exc)
            if exc.key and problem.startswith(f"{exc.key} "):
                problem = problem[len(exc.key) + 1:]
            self.fail(line, column or exc.key, problem)
        write = {k: merged[k] for k in OUTPUT_OPTIONS}
        self.check_write(line, given, write)

        outputs = self.outputs(index, line, given.get("output"), values.pop("output", None),
                               sketch, settings.samples, write["writer"])
        job = Job(index, line, sketch, prompt, outputs[0], settings, stages, write,
                  outputs=outputs)
        job.fingerprint = self.fingerprint(job)
        return job

    def known(self, line: int, column: str) -> str:
        """The canonical name of ``column``; an unknown one fails with the valid names."""
        name = ALIASES.get(column, column)
        if name in (*JOB_COLUMNS, *self.options):
            return name
        if column in COMMAND_LINE_ONLY:
            self.fail(line, column, f"the model loads once for the whole batch; pass "
                                    f"--{column.replace('_', '-')} on the command line instead")
        valid = [*JOB_COLUMNS, *self.options, *ALIASES]
        close = difflib.get_close_matches(str(column), valid, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        self.fail(line, column, f"unknown column; {hint}valid columns: {', '.join(valid)}")

    def sketch(self, line: int, column: str | None, value: Any) -> Path | None:
        """The row's drawing, opened now (a broken file fails before anything runs)."""
        if value is None or (isinstance(value, str) and value.strip().lower() in NO_SKETCH):
            return None
        if not isinstance(value, str):
            self.fail(line, column, f"expected a file name, got {value!r}")
        try:  # example:NAME is a drawing shipped with the package, as on the command line
            path = resolve_sketch(value.strip()) if is_example(value.strip()) \
                else (self.base / value.strip()).resolve()
        except UsageError as exc:
            self.fail(line, column, str(exc))
        if path not in self.hashes:
            try:
                image = load_sketch(path)
                check_drawing(image, f"sketch '{value.strip()}'")
                warn_unless_line_art(image, f"sketch '{value.strip()}'")  # once per drawing
                digest = fingerprint(path)
                if digest is None:
                    raise OSError(f"sketch '{value.strip()}' disappeared while being read")
                self.hashes[path] = digest
            except (UsageError, OSError) as exc:
                self.fail(line, column, f"{exc} (sketch paths are relative to the manifest's "
                                        f"folder)")
        return path

    def check_write(self, line: int, given: dict[str, str], write: dict[str, Any]) -> None:
        """The options of the output's writing, checked as ``api.postprocess`` and ``save``
        would check them minutes later."""
        column = given.get
        if not write["fps"] > 0:  # NaN too
            self.fail(line, column("fps", "fps"), f"must be positive, got {write['fps']}")
        try:
            check_size(write["size"])
        except SettingsError as exc:
            self.fail(line, column("size", "size"), exc.problem)
        try:
            self.manager.get("postprocessor", write["postprocess"])
        except FlipSketchError as exc:
            self.fail(line, column("postprocess", "postprocess"), str(exc))
        if write["writer"] is not None:
            try:
                self.manager.get("writer", write["writer"])
            except FlipSketchError as exc:
                self.fail(line, column("writer", "writer"), str(exc))

    def outputs(self, index: int, line: int, column: str | None, value: Any,
                sketch: Path | None, samples: int, writer: str | None = None) -> list[str]:
        """The row's output names (numbered for several samples), each claimed once; by
        default ``<job number>-<sketch name>.gif``, the same from a CSV or a JSONL file."""
        if value is None:
            value = f"{index + 1}-{sketch.stem if sketch is not None else 'animation'}.gif"
        if not isinstance(value, str):
            self.fail(line, column, f"expected a file name, got {value!r}")
        try:
            name = relative_output(value.strip(), self.manager, writer)
        except ValueError as exc:
            self.fail(line, column or "output", str(exc))
        outputs = [p.as_posix() for p in numbered_paths(name, samples, self.manager)]
        for out in outputs:
            if out in self.claimed:
                self.fail(line, column or "output",
                          f"'{out}' is also written by the row at line {self.claimed[out]}; "
                          f"give each row its own output")
            self.claimed[out] = line
        return outputs

    def fingerprint(self, job: Job) -> str:
        """sha256 of everything the output depends on: the drawing's bytes, the prompt, every
        setting, the stages, the model and how the frames are written (the output's suffix
        included: it picks the writer)."""
        key = {
            "sketch": None if job.sketch is None else self.hashes[job.sketch],
            "prompt": job.prompt,
            "settings": dataclasses.asdict(job.settings),
            "stages": job.stages,
            "write": job.write,
            "outputs": job.outputs,
            "model": self.model_key,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
