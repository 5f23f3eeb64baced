"""``flipsketch models``: which models there are, fetching one, and choosing the default.

    flipsketch models                     presets: hub ids, size on disk, downloaded, purpose
    flipsketch models download NAME       fetch once, with a progress bar (an interruption resumes)
    flipsketch models default [NAME]      show or set the model used without --model

The default is the first of ``--model``, ``FLIPSKETCH_MODEL``, the user's settings file and
``tiny`` (``flipsketch.models.presets.default_model``). Weights live in the Hugging Face cache,
shared with other programs; nothing here loads torch.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from flipsketch.cli.app import app, console, stdout
from flipsketch.errors import FlipSketchError, UsageError
from flipsketch.models import store
from flipsketch.models.presets import (
    MODEL_ENV,
    PRESETS,
    TINY_DIR,
    ModelSpec,
    default_model_origin,
    resolve_model,
    saved_default_model,
    set_default_model,
)

models_app = typer.Typer(help="List, download and choose the models flipsketch loads.")
app.add_typer(models_app, name="models")


def _shipped(spec: ModelSpec) -> bool:
    return spec.source == str(TINY_DIR)


def _where(spec: ModelSpec) -> str:
    """Where a model comes from, as ``--unet`` writes it: ``ID:SUBFOLDER``, then its base."""
    if _shipped(spec):
        return "(shipped inside flipsketch)"
    own = f"{spec.source}:{spec.subfolder}" if spec.subfolder else spec.source
    return own + (f" (base: {spec.fallback})" if spec.fallback else "")


def _describe(name: str, default: str) -> dict:
    """One model's row: what ``--json`` prints and the table shows."""
    try:
        status = store.status(name)
    except FlipSketchError:  # a name only another backbone knows (FLIPSKETCH_MODEL=...)
        return {"name": name, "preset": False, "from": name, "hub_ids": [], "downloaded": None,
                "size_bytes": None, "path": None, "default": name == default,
                "description": "not a preset, folder or hub id (another backbone's model?)"}
    spec = status.spec
    return {
        "name": name, "preset": name in PRESETS, "from": _where(spec), "hub_ids": spec.hub_ids,
        "downloaded": status.downloaded,
        "size_bytes": status.size_bytes if status.downloaded else None,
        "path": str(status.files.root) if status.files is not None else None,
        "default": name == default,
        "description": spec.description or ("local folder" if not spec.hub_ids else "hub model"),
    }


@models_app.callback(invoke_without_command=True)
def list_command(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option(
        "--json", help="JSON on stdout: the machine-readable form for scripts (the tables are "
                       "for reading; piped to a file they keep whole names).")] = False,
) -> None:
    """List the models: where each comes from, size on disk, downloaded or not, its purpose."""
    if ctx.invoked_subcommand is not None:
        return
    default = default_model_origin()
    names = list(PRESETS) + ([default.name] if default.name not in PRESETS else [])
    rows = [_describe(name, default.name) for name in names]
    if json_output:
        stdout.print_json(json.dumps({"default": default._asdict(), "models": rows,
                                      "hub_cache": str(store.hub_cache_dir())}))
        return
    table = Table(title="Models")
    table.add_column("", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("from", overflow="fold")
    table.add_column("size", no_wrap=True, justify="right")
    table.add_column("downloaded", no_wrap=True)
    table.add_column("for")
    for row in rows:
        downloaded = {True: "[green]yes[/]", False: "no", None: "?"}[row["downloaded"]]
        size = decimal(row["size_bytes"]) if row["size_bytes"] is not None else "-"
        table.add_row("*" if row["default"] else "", escape(row["name"]), escape(row["from"]),
                      size, downloaded, escape(row["description"]))
    stdout.print(table)
    stdout.print(f"* the default model, from {escape(_origin(default.origin))} (change it with "
                 "`flipsketch models default NAME`)\nfetch a model with `flipsketch models "
                 f"download NAME`; hub models live in {escape(str(store.hub_cache_dir()))}",
                 highlight=False, soft_wrap=True)


def _origin(origin: str) -> str:
    return {"built-in": "the built-in default", MODEL_ENV: f"${MODEL_ENV}"}.get(
        origin, f"settings file {origin}")


@models_app.command("download")
def download_command(
    name: Annotated[str, typer.Argument(help="Preset (modelscope-sketch, modelscope) or hub id.")],
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help="Also fetch pickled .bin weights, for models that have no "
                               "safetensors (loading them runs code from the file).")] = False,
) -> None:
    """Download a model's weights once, with a progress bar; an interrupted download resumes.

    Only what loading reads is fetched: configs, tokenizer files and safetensors weights.
    """
    spec = resolve_model(name)
    if not spec.hub_ids:
        what = "shipped inside flipsketch" if _shipped(spec) else "a local folder"
        console.print(f"{escape(name)} is {what}; nothing to download", highlight=False,
                      soft_wrap=True)
        return
    before = store.status(name, allow_pickle=allow_pickle)
    if before.downloaded and store.hub_offline():
        console.print(f"{escape(name)} is already downloaded ({decimal(before.size_bytes)} in "
                      f"{escape(str(before.files.root))}); HF_HUB_OFFLINE is set, so the hub "
                      "was not asked for updates", highlight=False, soft_wrap=True)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                  transient=not console.is_terminal) as bar:
        task = bar.add_task(f"downloading {escape(name)}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        after = store.download(name, allow_pickle=allow_pickle, progress=progress)
    verb = "up to date:" if before.downloaded else "downloaded"
    console.print(f"{verb} {escape(name)} ({decimal(after.size_bytes)} in "
                  f"{escape(str(after.files.root))})", highlight=False, soft_wrap=True)


@models_app.command("default")
def default_command(
    name: Annotated[str | None, typer.Argument(
        help="Preset, local folder or hub id. Without it: show the default.")] = None,
    unset: Annotated[bool, typer.Option(
        "--unset", help="Forget the saved default (back to tiny).")] = False,
) -> None:
    """Show or set the model used when --model is not given ($FLIPSKETCH_MODEL overrides it)."""
    if name is not None and unset:
        raise UsageError("pass a model name or --unset, not both")
    if name is None and not unset:
        default = default_model_origin()
        stdout.print(f"{escape(default.name)} (from {escape(_origin(default.origin))})",
                     highlight=False, soft_wrap=True)
        return
    path = set_default_model(None if unset else name)
    saved = saved_default_model()
    done = f"default model: {escape(saved)}" if saved else "forgot the saved default model"
    console.print(f"{done} (settings file {escape(str(path))})", highlight=False, soft_wrap=True)
    default = default_model_origin()
    if default.origin == MODEL_ENV:
        console.print(f"note: ${MODEL_ENV}={escape(default.name)} is set and overrides it",
                      highlight=False, soft_wrap=True)
    elif saved:
        _hint_download(saved)


def _hint_download(name: str) -> None:
    """After choosing a hub model as the default, say how to fetch it if it is not here."""
    if resolve_model(name).hub_ids and not store.status(name).downloaded:
        console.print(f"not downloaded yet: run `flipsketch models download {escape(name)}`",
                      highlight=False, soft_wrap=True)
