"""``flipsketch recipe run|validate|list``: whole workflows from a YAML file.

The command line only draws: loading, validation, the cache and the steps live in
``flipsketch.recipes``, so a recipe behaves the same when a program runs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from flipsketch.cli.app import app, console, stdout
from flipsketch.errors import FlipSketchError
from flipsketch.plugins import get_manager

# flipsketch.recipes loads the sampler's modules (torch); the commands import it when they run.
if TYPE_CHECKING:
    from flipsketch.recipes import Step, StepReport

recipe_app = typer.Typer(help="Run whole workflows from YAML recipes.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")

RecipeArg = Annotated[str, typer.Argument(
    metavar="FILE|NAME",
    help="A recipe file, or the name of a bundled recipe (see 'flipsketch recipe list').")]


class _RichReporter:
    """One progress bar per step; cached steps show as done at once.

    It implements every method of ``flipsketch.recipes.Reporter``, the runner's interface.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None
        self.total = 1

    def step_started(self, step: Step, cached: bool) -> None:
        label = f"{escape(step.name)} [dim]({escape(step.type)}{', cached' if cached else ''})[/]"
        self.total = 1
        self.task = self.progress.add_task(label, total=1, completed=1 if cached else 0)

    def step_progress(self, done: int, total: int) -> None:
        self.total = total
        self.progress.update(self.task, completed=done, total=total)

    def step_finished(self, report: StepReport) -> None:
        self.progress.update(self.task, completed=self.total, total=self.total)


@recipe_app.command("run")
def run_command(
    recipe: RecipeArg,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="OUTDIR",
        help="Folder for the outputs and the step cache. Default: ./<recipe name>")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Change the recipe before it is validated, e.g. seed=3, steps.letters.text=DOG "
             "or model=./my-model; repeat for several.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite files in OUTDIR that this recipe did not write.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Validate and show which steps would run; write nothing.")] = False,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Ignore the cache and run every step again.")] = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print a machine-readable summary on stdout.")] = False,
) -> None:
    """Run a recipe; steps whose inputs did not change since the last run are skipped."""
    from flipsketch.recipes import load_recipe, run_recipe

    loaded = load_recipe(recipe, overrides or ())
    outdir = output if output is not None else Path(loaded.path.stem)
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=not console.is_terminal,
                  disable=dry_run) as progress:
        reports = run_recipe(loaded, outdir, force=force, fresh=fresh, dry_run=dry_run,
                             reporter=_RichReporter(progress))

    title = f"{loaded.display} -> {outdir}" + (" (dry run)" if dry_run else "")
    table = Table(title=escape(title),
                  title_justify="left")
    for column in ("step", "type", "status", "frames", "time", "outputs"):
        table.add_column(column, justify="right" if column in ("frames", "time") else "left")
    for r in reports:
        status = "would run" if r.status == "planned" else r.status
        table.add_row(escape(r.name), escape(r.type), status, ", ".join(map(str, r.frames)),
                      f"{r.seconds:.1f} s" if r.seconds else "", escape(", ".join(r.outputs)))
    console.print(table)
    if json_output:
        stdout.print_json(json.dumps({
            "recipe": loaded.display,
            "outdir": str(outdir),
            "dry_run": dry_run,
            "steps": [r.__dict__ for r in reports],
            "outputs": [str(outdir / out) for r in reports for out in r.outputs],
        }))


@recipe_app.command("validate")
def validate_command(
    recipes: Annotated[list[str], typer.Argument(
        metavar="FILE|NAME...", help="Recipe files or bundled recipe names.")],
) -> None:
    """Check recipes completely (keys, types, files, step references) without running them.

    One line per recipe; the exit code is 2 when any of them has a problem.
    """
    from flipsketch.recipes import load_recipe

    worst = 0
    for name in recipes:
        try:
            loaded = load_recipe(name)
        except FlipSketchError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)
            worst = max(worst, exc.exit_code)
            continue
        steps = ", ".join(f"{s.name} ({s.type})" for s in loaded.steps)
        console.print(f"[green]ok[/] {escape(loaded.display)}: {len(loaded.steps)} steps: "
                      f"{escape(steps)}", highlight=False, soft_wrap=True)
    if worst:
        raise SystemExit(worst)


@recipe_app.command("list")
def list_command() -> None:
    """The bundled recipes (runnable by name from anywhere) and the step types recipes use."""
    from flipsketch.recipes import describe_bundled

    recipes = Table("recipe", "description")
    for name, description in describe_bundled().items():
        recipes.add_row(escape(name), escape(description))
    stdout.print(recipes)
    steps = Table("step type", "what it does")
    registry = get_manager().registry("recipe_step")
    for name in sorted(registry.impls):
        steps.add_row(escape(name), escape(registry.impls[name].description))
    stdout.print(steps)
