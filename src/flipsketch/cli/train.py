"""``flipsketch train``: train the embedded tiny model and export its weights.

``train base`` runs the stages named in a config (src/flipsketch/models/tiny.yaml) into a run
folder that holds checkpoints, loss logs and the newest exported model; ``train export`` turns
the newest checkpoint of a run into a model folder (e.g. src/flipsketch/models/weights/tiny).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from flipsketch.cli.app import app, console, stdout
from flipsketch.errors import UsageError
from flipsketch.files import check_writable_folder

train_app = typer.Typer(help="Train the embedded tiny model or export a run's weights.",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

# In a log file (no terminal), a plain progress line at most this often instead of a live bar.
LOG_LINE_EVERY_S = 30.0


@contextmanager
def _reporting() -> Iterator[tuple[Callable[[str], None], Callable[[str, int, int, str], None]]]:
    """The ``log`` and ``progress`` callbacks that training reports to, drawn on stderr.

    In a terminal, one live bar per stage; in a log file, a plain line now and then. The bar
    starts with the first report, so the processes of an ``accelerate launch`` that never
    report (all but the main one) draw nothing.
    """
    bar = Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
    tasks: dict[str, TaskID] = {}
    last_line = -LOG_LINE_EVERY_S

    def log(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    def progress(stage: str, done: int, total: int, info: str) -> None:
        nonlocal last_line
        if not console.is_terminal:
            if time.monotonic() - last_line >= LOG_LINE_EVERY_S or done == total:
                last_line = time.monotonic()
                log(f"{stage} step {done}/{total} {info}")
            return
        if stage not in tasks:
            bar.start()
            tasks[stage] = bar.add_task(stage, total=total, info="")
        bar.update(tasks[stage], completed=done, info=info)

    try:
        yield log, progress
    finally:
        if tasks:  # started
            bar.stop()


@train_app.command("base")
def base(
    config: Annotated[Path | None, typer.Argument(
        help="Training config (architecture, data, stages). Default: the shipped model's own, "
             "flipsketch/models/tiny.yaml.")] = None,
    out: Annotated[Path, typer.Option("-o", "--output",
                                      help="Run folder: checkpoints, logs, model/.")]
    = Path("runs/tiny"),
    resume: Annotated[bool, typer.Option("--resume",
                                         help="Continue from the newest checkpoint.")] = False,
    from_shipped: Annotated[bool, typer.Option(
        "--from-shipped", help="Start from the shipped model's weights, not from scratch.")]
    = False,
    steps: Annotated[int | None, typer.Option("--steps", min=1,
                                              help="Total UNet steps (overrides the config).")]
    = None,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Also export the EMA weights here as training goes (replaced whole).")]
    = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Change a config value, e.g. --set stages.base.batch_size=64 --set "
             "mixed_precision=bf16 (a GPU run); repeatable. The run's config.yaml records it.")]
    = None,
    time_limit: Annotated[float | None, typer.Option(
        "--time-limit", min=0.01, help="Stop the UNet stage after this many minutes, "
        "checkpointed and exported as at a last step (a GPU lent for a fixed time).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]
    = False,
) -> None:
    """Train the tiny model's VAE, UNet and text encoder on synthetic sketch animations."""
    from flipsketch.models.tiny import CONFIG_PATH, load_config, override_config
    from flipsketch.training.base import train_base

    settings = load_config(config if config is not None else CONFIG_PATH)
    for override in overrides or []:
        override_config(settings, override)
    # --export replaces a model folder as training goes; anything else of the user's stays.
    if export is not None and not (export / "model_index.json").is_file():
        check_writable_folder(export, False, force_fix=None,
                              what="--export folder (an empty one or a model folder)")
    with _reporting() as (log, progress):
        summary = train_base(settings, out, resume=resume, from_shipped=from_shipped,
                             steps=steps, export_dir=export,
                             time_limit=time_limit * 60 if time_limit else None,
                             log=log, progress=progress)
    console.print(f"stopped at step {summary['step']}; checkpoints in {out}", markup=False,
                  highlight=False)
    if json_out:
        stdout.print_json(json.dumps({**summary, "run_dir": str(out)}))


@train_app.command("export")
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder of 'flipsketch train base'.")],
    out: Annotated[Path, typer.Option("-o", "--output", help="Model folder to write.")],
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty folder.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Export the raw weights, not the EMA.")]
    = False,
) -> None:
    """Export the newest checkpoint of a run (EMA weights) as a diffusers model folder."""
    from flipsketch.training.base import export_run

    if not run_dir.is_dir():
        raise UsageError(f"run folder {run_dir} does not exist; pass the -o of 'train base'")
    check_writable_folder(out, force, what="-o folder",
                          force_fix="--force to replace the model in it")
    path = export_run(run_dir, out, ema=not raw)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    console.print(f"exported {run_dir} to {path} ({size / 1e6:.1f} MB)", markup=False,
                  highlight=False)


@train_app.command("lora")
def lora(
    data: Annotated[Path, typer.Argument(
        help="Folder of clips (GIF, MP4, WebP, APNG or PNG-frame folders) with captions in "
             "captions.jsonl or a .txt beside each clip.")],
    out: Annotated[Path, typer.Option("-o", "--output",
                                      help="Adapter folder to write (checkpoints inside).")],
    model: Annotated[str | None, typer.Option(
        help="Base model: preset (tiny, modelscope-sketch, modelscope), folder or hub id. "
             "Default: $FLIPSKETCH_MODEL, else 'flipsketch models default', else tiny.")]
    = None,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 4,
    steps: Annotated[int, typer.Option(help="Total optimiser steps.")] = 2500,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-4,
    batch: Annotated[int, typer.Option(help="Clips per step and process.")] = 1,
    grad_accum: Annotated[int, typer.Option(help="Batches accumulated per step.")] = 1,
    frames: Annotated[int, typer.Option(help="Frames per clip (sampled or padded).")] = 10,
    size: Annotated[int | None, typer.Option(
        help="Frame size in pixels. Default: the model's resolution.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    mixed_precision: Annotated[str, typer.Option(help="no, fp16 (GPU) or bf16.")] = "no",
    save_every: Annotated[int, typer.Option(
        help="Checkpoint and export the adapter every N steps.")] = 500,
    resume: Annotated[bool, typer.Option("--resume",
                                         help="Continue from the newest checkpoint.")] = False,
    caption_dropout: Annotated[float, typer.Option(
        help="Share of captions replaced by \"\" so guidance keeps working.")] = 0.1,
    force: Annotated[bool, typer.Option("--force", help="Start over in a non-empty folder.")]
    = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]
    = False,
) -> None:
    """Fine-tune a LoRA on your own sketch animations; use it with 'animate --lora DIR'.

    On several GPUs: accelerate launch -m flipsketch train lora ... (same options).
    """
    from accelerate import PartialState

    from flipsketch.models.presets import default_model
    from flipsketch.training.lora import LoraSettings, train_lora

    model = model or default_model()
    settings = LoraSettings(model=model, rank=rank, steps=steps, lr=lr, batch_size=batch,
                            grad_accum=grad_accum, num_frames=frames, size=size, seed=seed,
                            mixed_precision=mixed_precision, save_every=save_every,
                            caption_dropout=caption_dropout)
    with _reporting() as (log, progress):
        summary = train_lora(data, out, settings, resume=resume, force=force, log=log,
                             progress=progress)
    if PartialState().is_main_process:
        console.print(f"LoRA at step {summary['step']} in {out}; use it with "
                      f"--model {model} --lora {out}", markup=False, highlight=False)
        if json_out:
            stdout.print_json(json.dumps(summary))
