"""Running a validated recipe step by step, skipping the steps whose cache is valid."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flipsketch.api import load_pipeline
from flipsketch.errors import FlipSketchError, Terminated, UsageError
from flipsketch.files import exclusive_folder, sweep_killed_writes
from flipsketch.models.video import load_video_pipeline
from flipsketch.plugins import get_manager
from flipsketch.recipes.cache import StepCache, step_keys
from flipsketch.recipes.schema import Clip, Recipe, Step


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
    manager = manager or get_manager()
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
    # One run per output folder (two would race on the step cache and the outputs); holding
    # it, what an earlier run killed mid-write left can go.
    with exclusive_folder(outdir, f"another 'flipsketch recipe run' is writing into "
                                  f"'{outdir}'; wait for it to finish, or pass another -o"):
        sweep_killed_writes(outdir)
        return _run_steps(recipe, outdir, cache, keys, cached, reporter, manager)


def _run_steps(recipe: Recipe, outdir: Path, cache: StepCache, keys: dict[str, str],
               cached: dict[str, bool], reporter: Reporter, manager) -> list[StepReport]:
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
    if isinstance(exc, Terminated):  # SIGTERM, as the CLI reports it
        reason, code = "terminated", 143
    elif isinstance(exc, KeyboardInterrupt):
        reason, code = "interrupted", 130
    else:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        code = getattr(exc, "exit_code", 1)
    error = FlipSketchError(f"step '{step.name}' ({step.type}) failed: {reason}; outputs of "
                            f"earlier steps are kept, and a re-run resumes from this step")
    error.exit_code = code
    return error
