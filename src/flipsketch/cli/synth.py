"""``flipsketch synth``: write a synthetic training dataset of sketch animations."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from flipsketch.cli.app import app, console
from flipsketch.training.synth import FORMATS, write_dataset


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the clips and captions.jsonl into.")],
    clips: Annotated[int, typer.Option("--clips", help="Number of clips to write.")],
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same clips.")],
    size: Annotated[int, typer.Option("--size", help="Frame width and height in pixels.")] = 128,
    frames: Annotated[int, typer.Option("--frames", help="Frames per clip.")] = 10,
    fmt: Annotated[
        str, typer.Option("--format", help=f"{', '.join(FORMATS)} (png: a folder of frames).")
    ] = "gif",
    force: Annotated[
        bool, typer.Option("--force", help="Replace the clips in a non-empty folder.")
    ] = False,
) -> None:
    """Write synthetic sketch animations: one subject, one motion and a caption per clip."""
    start = time.perf_counter()
    with Progress(
        TextColumn("writing clips"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task("synth", total=clips)
        write_dataset(
            out, clips, seed, size=size, num_frames=frames, fmt=fmt, force=force,
            progress=lambda done: bar.update(task, completed=done),
        )
    seconds = time.perf_counter() - start
    console.print(
        f"wrote {clips} clips to {out} in {seconds:.1f} s ({clips / seconds:.0f} clips/s)",
        markup=False, highlight=False,
    )
