"""``flipsketch batch MANIFEST -o OUTDIR``: many animations, one model load per process.

The command line checks its options and the resources once, starts the processes of
``--processes N`` (``accelerate launch``) and draws the progress bars and the summary: reading
and checking the manifest, resuming, sharding and the report live in ``flipsketch.batch``.
The sampler and output options are ``animate``'s (the same ``Annotated`` aliases) and give
the defaults of every row.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from flipsketch.cli.animate import (
    AllowPickle,
    Backbone,
    Device,
    Dtype,
    JsonOutput,
    Lora,
    Model,
    NoCache,
    Unet,
    checked_request,
)
from flipsketch.cli.app import DEBUG, app, console, state, stdout
from flipsketch.cli.options import with_options
from flipsketch.errors import Terminated, UsageError
from flipsketch.plugins import get_manager

# flipsketch.batch loads the sampler's modules (torch); the command imports it when it runs.
if TYPE_CHECKING:
    from flipsketch.batch import Job, JobReport, Manifest, ModelChoice

Opt = typer.Option


class _RichReporter:
    """Two bars: the whole batch (jobs, with its ETA) and the job in progress (its sampler
    steps, with its ETA). It implements every method of ``flipsketch.batch.Reporter``."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.all: TaskID | None = None
        self.job: TaskID | None = None
        self.name = ""

    def batch_started(self, jobs: int, to_run: int, processes: int) -> None:
        skipped = f", {jobs - to_run} finished earlier" if jobs > to_run else ""
        where = f" on {processes} processes" if processes > 1 else ""
        self.all = self.bar.add_task(f"{to_run} jobs{where}{skipped}", total=to_run)

    def job_started(self, job: Job) -> None:
        self.name = escape(job.output)
        if self.job is None:
            self.job = self.bar.add_task(self.name, total=1)
        self.bar.reset(self.job, total=1, description=self.name)

    def job_progress(self, stage: str, done: int, total: int) -> None:
        self.bar.update(self.job, completed=done, total=total,
                        description=f"{self.name} [dim]{stage}[/]")

    def job_finished(self, report: JobReport) -> None:
        if report.status == "failed":
            self.bar.console.print(f"[red]failed[/] {escape(report.output)} (line "
                                   f"{report.line}): {escape(report.error or '')}",
                                   highlight=False, soft_wrap=True)
        elif report.status == "done" and not self.bar.console.is_terminal:
            self.bar.console.print(f"done {escape(report.output)} in {report.seconds:.1f} s",
                                   highlight=False)

    def overall(self, ran: int, to_run: int) -> None:
        self.bar.update(self.all, completed=ran, total=to_run)


@app.command("batch")
@with_options
def batch_command(
    ctx: typer.Context,
    manifest: Annotated[Path, typer.Argument(
        help="CSV or JSONL, one row per job: sketch (relative to the manifest; empty for "
             "text only), prompt, output, and any option below as a column.")],
    output: Annotated[Path, Opt("--output", "-o", metavar="OUTDIR",
                                help="Folder for the outputs and report.jsonl.")],
    processes: Annotated[int, Opt(
        "--processes", help="Run N processes through 'accelerate launch', one per GPU (on "
                            "the CPU when there is none).")] = 1,
    fresh: Annotated[bool, Opt("--fresh", help="Run every job again, even finished ones.")]
    = False,
    force: Annotated[bool, Opt("--force", help="Overwrite files in OUTDIR that no batch "
                                               "wrote.")] = False,
    launched: Annotated[bool, Opt("--launched", hidden=True)] = False,
    model: Model = None,
    unet: Unet = None,
    lora: Lora = None,
    allow_pickle: AllowPickle = False,
    device: Device = None,
    dtype: Dtype = None,
    no_cache: NoCache = False,
    backbone: Backbone = None,
    json_output: JsonOutput = False,
    **options: Any,
) -> None:
    """Animate every row of a manifest; finished jobs are skipped, failures reported.

    On several GPUs: --processes N, or accelerate launch -m flipsketch batch ... (same
    options; several machines: accelerate's own config). The report is OUTDIR/report.jsonl.
    """
    # Imported here so that other commands and --help start without loading torch.
    from flipsketch.batch import ModelChoice, check_outdir, read_manifest, read_report, run_batch
    from flipsketch.models.presets import default_model

    manager = get_manager()
    # 1. The command line's defaults, checked and named by their flags (--steps ...).
    request = checked_request(None, options, backbone, manager)
    defaults = {name.rstrip("_"): value for name, value in asdict(request.settings).items()}
    defaults.update({k: v for k, v in request.stages.items() if v is not None})
    out = request.output
    defaults.update(size=out.size, fps=out.fps, postprocess=out.postprocessor,
                    transparent=out.transparent, writer=out.writer)
    choice = ModelChoice(model or default_model(), unet, tuple(lora or ()), dtype, backbone,
                         allow_pickle)

    # 2. Every row and every output, before anything runs or is written.
    loaded = read_manifest(manifest, defaults, model=choice, manager=manager)
    if not launched:  # once, here: not again in each process that --processes starts
        _check_resources(loaded, choice, device)
    if processes != 1:
        check_outdir(loaded, output, force=force, manager=manager)  # else run_batch checks it
        _launch(ctx, processes, output, json_output)
        return

    # 3. Run, with progress; then the summary.
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                  console=console, transient=not console.is_terminal) as bar:
        result = run_batch(loaded, output, model=choice, device=device, fresh=fresh,
                           force=force, cache=not no_cache, reporter=_RichReporter(bar),
                           manager=manager)
    if result.is_main and not launched:
        _summary(read_report(output), output, result.seconds, json_output)


def _check_resources(loaded: Manifest, choice: ModelChoice, device: str | None) -> None:
    """``animate``'s check before the model loads, once per distinct request of the batch
    (frames x samples x size), each problem named by the first row that asks for it."""
    from flipsketch.api import check_resources
    from flipsketch.devices import resolve_device, resolve_dtype
    from flipsketch.errors import SettingsError

    # --device and --dtype are the command line's, not a row's: their problems unprefixed.
    resolve_dtype(choice.dtype, resolve_device(device))
    seen: set[tuple] = set()
    for job in loaded.jobs:
        request = (job.settings.num_frames, job.settings.samples, job.write["size"])
        if request in seen:
            continue
        seen.add(request)
        try:
            check_resources(choice.model, job.settings, job.write["size"], device=device,
                            dtype=choice.dtype, unet=choice.unet, backbone=choice.backbone)
        except (SettingsError, UsageError) as exc:
            problem = (f"{exc.field.rstrip('_')} {exc.problem}"
                       if isinstance(exc, SettingsError) else str(exc))
            raise UsageError(f"{loaded.display}:{job.line}: {problem}") from None


def _launch(ctx: typer.Context, processes: int, output: Path, json_output: bool) -> None:
    """Run this very command in ``processes`` processes through ``accelerate launch``; the
    summary is drawn here from the merged report, once."""
    import time

    from flipsketch.batch import read_report
    from flipsketch.batch.launch import launch_command

    started = time.perf_counter()
    command, env = launch_command(_given_args(ctx), processes)
    with subprocess.Popen(command, env=env) as launcher:
        try:
            code = launcher.wait()
        except KeyboardInterrupt as exc:  # the processes got the same Ctrl-C; let them stop
            if isinstance(exc, Terminated):  # SIGTERM reached this process only: pass it on
                launcher.terminate()
            launcher.wait()
            raise
    if code != 0:
        raise typer.Exit(code)
    _summary(read_report(output), output, time.perf_counter() - started, json_output)


def _given_args(ctx: typer.Context) -> list[str]:
    """``batch ...`` with the options the user gave, less ``--processes``, plus ``--launched``
    (the workers leave the summary to this process)."""
    arguments, options = [], []
    for param in ctx.command.params:
        value = ctx.params[param.name]
        source = ctx.get_parameter_source(param.name)
        # (Typer bundles its own click: the enum is compared by name, the type by its name.)
        if param.name in ("processes", "launched") or source.name != "COMMANDLINE":
            continue
        if param.param_type_name == "argument":
            arguments.append(str(value))
        elif param.is_flag:
            options.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            for item in value if param.multiple else [value]:
                options += [param.opts[0], str(item)]
    return [*([DEBUG] if state.debug else []), "batch", *arguments, *options, "--launched"]


def _summary(reports: list[JobReport], output: Path, seconds: float,
             json_output: bool = False) -> None:
    """The table of statuses and the failed jobs (with ``--json`` also every job's report
    line on stdout); exit 1 if any failed."""
    from flipsketch.batch import REPORT

    if json_output:
        stdout.print_json(json.dumps({
            "report": str(output / REPORT), "seconds": round(seconds, 3),
            **{status: sum(r.status == status for r in reports)
               for status in ("done", "skipped", "failed")},
            "jobs": [asdict(r) for r in reports]}))

    table = Table(title="batch", title_justify="left")
    for column in ("status", "jobs", "time"):
        table.add_column(column, justify="left" if column == "status" else "right")
    for status in ("done", "skipped", "failed"):
        rows = [r for r in reports if r.status == status]
        table.add_row(status, str(len(rows)), f"{sum(r.seconds for r in rows):.1f} s")
    table.add_row("[bold]total[/]", str(len(reports)), f"{seconds:.1f} s")
    console.print(table)
    console.print(f"report: {escape(str(output / REPORT))}", highlight=False, soft_wrap=True)
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        errors = Table("line", "output", "error", title="failed jobs", title_justify="left")
        for r in failed:
            errors.add_row(str(r.line), escape(r.output), escape(r.error or ""))
        console.print(errors)
        raise typer.Exit(1)
