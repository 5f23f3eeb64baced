"""LoRA fine-tuning: adapt a text-to-video model to a user's own sketch animations.

This is the paper's first step (a rank-4 LoRA, 2,500 iterations) on any folder of captioned
clips (``data.ClipFolder``). peft injects LoRA layers into the UNet's attention projections
(``UNet3DConditionModel`` has no ``add_adapter``), everything else is frozen, and the one
denoising-loss loop (``training.train_denoiser``) trains them with accelerate, so the same
command runs on one device or under ``accelerate launch`` on several.

An adapter folder holds::

    adapter_model.safetensors, adapter_config.json   the adapter (``models.lora``), which
                                                     ``--lora DIR[:SCALE]`` loads
    README.md                                        a model card: base, data, steps, rank, loss
    checkpoints/                                     checkpoint-N/, loss.jsonl, settings.json

The adapter is re-exported at every checkpoint, so a long run can be tried while it trains.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from flipsketch.errors import SettingsError, UsageError
from flipsketch.files import (
    check_writable_folder,
    remove,
    replace_atomically,
    staging_folder,
)
from flipsketch.models.lora import (
    ADAPTER_CONFIG,
    ADAPTER_NAME,
    ADAPTER_WEIGHTS,
    inject_lora,
    save_lora,
)
from flipsketch.models.presets import default_model

if TYPE_CHECKING:  # the loop imports accelerate and diffusers: loaded when training starts
    from flipsketch.training.loop import Log, Progress

CARD = "README.md"
RUN_DIR = "checkpoints"
SETTINGS = "settings.json"
MIXED_PRECISION = ("no", "fp16", "bf16")
# Settings a resumed run may change; any other difference would silently change the run.
RESUMABLE_CHANGES = {"steps", "save_every", "mixed_precision"}


@dataclass
class LoraSettings:
    """Everything a run is started with, defaulting to the paper's recipe."""

    model: str | None = None  # None: the default model (presets.default_model)
    rank: int = 4
    steps: int = 2500
    lr: float = 1e-4
    batch_size: int = 1
    grad_accum: int = 1
    num_frames: int = 10
    size: int | None = None  # None: the model's own resolution
    seed: int = 0
    mixed_precision: str = "no"
    save_every: int = 500
    caption_dropout: float = 0.1

    def validate(self) -> None:
        """Raise a ``SettingsError`` naming the field of the first value that cannot work
        (the CLI words it with its flag, e.g. ``batch_size`` as --batch)."""
        checks = [
            ("rank", self.rank >= 1, "must be at least 1"),
            ("steps", self.steps >= 1, "must be at least 1"),
            ("lr", self.lr > 0, "must be positive"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("grad_accum", self.grad_accum >= 1, "must be at least 1"),
            ("num_frames", self.num_frames >= 1, "must be at least 1"),
            ("size", self.size is None or self.size >= 8, "must be at least 8 pixels"),
            ("save_every", self.save_every >= 1, "must be at least 1"),
            ("caption_dropout", 0 <= self.caption_dropout <= 1, "must be between 0 and 1"),
            ("mixed_precision", self.mixed_precision in MIXED_PRECISION,
             f"must be one of {', '.join(MIXED_PRECISION)}, not '{self.mixed_precision}'"),
        ]
        for name, ok, problem in checks:
            if not ok:
                raise SettingsError(name, problem)


def _base_name(model: str) -> str:
    """How the adapter records its base: preset names and hub ids as given, folders absolute
    (a relative path means nothing once the adapter is copied elsewhere)."""
    from flipsketch.models.presets import PRESETS

    path = Path(model).expanduser()
    return str(path.resolve()) if model not in PRESETS and path.is_dir() else model


def _check_out_dir(out_dir: Path, resume: bool, force: bool) -> None:
    if resume and force:
        raise UsageError("pass either --resume (continue the run) or --force (start over), "
                         "not both")
    check_writable_folder(out_dir, resume or force, what="-o folder",
                          force_fix="--resume to continue its run, --force to start over")


def _check_same_run(saved_file: Path, settings: LoraSettings) -> None:
    """A resumed run must be the run it continues, apart from ``RESUMABLE_CHANGES``."""
    if not saved_file.is_file():
        return
    saved = json.loads(saved_file.read_text())
    for key, value in asdict(settings).items():
        if key not in RESUMABLE_CHANGES and key in saved and saved[key] != value:
            option = {"batch_size": "batch", "grad_accum": "grad-accum",
                      "num_frames": "frames"}.get(key, key).replace("_", "-")
            raise UsageError(f"{saved_file.parent} was started with --{option} {saved[key]}, "
                             f"not {value}; pass the same value to resume it")


def _start_over(out_dir: Path) -> None:
    """--force: remove an earlier run's outputs (only ours; other files in the folder stay)."""
    for name in (RUN_DIR, ADAPTER_WEIGHTS, ADAPTER_CONFIG, CARD):
        remove(out_dir / name)


def _card(settings: LoraSettings, data: Path, clips: int, step: int, loss: float | None) -> str:
    base = settings.model
    loss_text = "n/a" if loss is None else f"{loss:.4f} (mean of the last logged steps)"
    return f"""# LoRA adapter for {base}

Trained with `flipsketch train lora` on sketch animations.

| | |
| --- | --- |
| base model | `{base}` |
| data | `{data}` ({clips} clips, {settings.num_frames} frames of {settings.size} px) |
| steps | {step} of {settings.steps} |
| rank | {settings.rank} |
| learning rate | {settings.lr:g}, batch {settings.batch_size} x {settings.grad_accum} per process |
| caption dropout | {settings.caption_dropout:g} |
| final loss | {loss_text} |
| date | {datetime.date.today().isoformat()} |

Use it with the base model it was trained on:

    flipsketch animate sketch.png "a fish swimming" --model {base} --lora {{this folder}}[:SCALE]
"""


def _last_logged_loss(run_dir: Path) -> float | None:
    log = run_dir / "loss.jsonl"
    if not log.is_file():
        return None
    lines = log.read_text().splitlines()
    return json.loads(lines[-1])["loss"] if lines else None


def _export(unet: torch.nn.Module, out_dir: Path, base: str, card: str) -> None:
    """Write the adapter and its card next to each other, each file replaced atomically, so a
    crash or Ctrl-C never leaves a half-written adapter where ``--lora`` would load it."""
    with staging_folder(out_dir) as staging:
        save_lora(unet, staging, ADAPTER_NAME, base_model=base)
        (staging / CARD).write_text(card)
        for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG, CARD):
            replace_atomically(staging / name, out_dir / name)


def train_lora(data: str | os.PathLike, out_dir: str | os.PathLike,
               settings: LoraSettings | None = None, resume: bool = False,
               force: bool = False, log: Log | None = None,
               progress: Progress | None = None) -> dict:
    """Train a LoRA on the clips in ``data`` and write it to ``out_dir``; returns a summary
    (``step``, ``loss``, ``clips``, ``adapter``).

    Every process of an ``accelerate launch`` runs this whole function; only the main one
    writes. Nothing is written before the data, the model and the settings have been checked.
    ``log`` and ``progress`` report to the caller, as in ``loop.train_denoiser``.
    """
    from flipsketch.api import load_pipeline
    from flipsketch.devices import process_state
    from flipsketch.training.data import ClipFolder
    from flipsketch.training.loop import LoopConfig, train_denoiser

    settings = replace(settings or LoraSettings())  # the caller's copy stays as it was
    settings.validate()
    settings.model = _base_name(settings.model or default_model())
    data, out_dir = Path(data), Path(out_dir)
    _check_out_dir(out_dir, resume, force)
    state = process_state("")  # joins the other processes under `accelerate launch`
    if settings.mixed_precision == "fp16" and state.device.type == "cpu":
        raise UsageError("fp16 mixed precision needs a GPU; use --mixed-precision bf16 or no")

    # Every clip is read (and checked) now, before the model loads: bad data costs seconds.
    # The frame size defaults to the model's, so it is set once the model is known.
    dataset = ClipFolder(data, settings.num_frames, size=settings.size or 1)
    # fp32 weights on this process's device; --mixed-precision autocasts the computation.
    pipe = load_pipeline(settings.model, device=str(state.device), dtype="fp32")
    settings.size = dataset.size = settings.size or pipe.model_resolution
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    if settings.size % factor:
        raise UsageError(f"--size {settings.size} is not a multiple of {factor}, the VAE's "
                         f"down-sampling; pass e.g. --size {settings.size // factor * factor}")
    run_dir = out_dir / RUN_DIR
    if resume:
        _check_same_run(run_dir / SETTINGS, settings)

    torch.manual_seed(settings.seed)  # the LoRA's A matrices: the same in every process
    inject_lora(pipe.unet, settings.rank)
    state.wait_for_everyone()  # every process has checked the folder before it changes
    if state.is_main_process:
        if force:
            _start_over(out_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / SETTINGS).write_text(json.dumps(asdict(settings), indent=2) + "\n")
        if log is not None:
            log(f"training a rank-{settings.rank} LoRA of {settings.model} on "
                f"{len(dataset)} clips from {data}")

    def on_export(weights: dict[str, torch.Tensor], step: int) -> None:
        # No EMA is kept, so ``weights`` are the live adapter's, which save_lora reads.
        card = _card(settings, data.resolve(), len(dataset), step, _last_logged_loss(run_dir))
        _export(pipe.unet, out_dir, settings.model, card)

    loop = LoopConfig(
        steps=settings.steps, batch_size=settings.batch_size, lr=settings.lr,
        gradient_accumulation_steps=settings.grad_accum,
        caption_dropout=settings.caption_dropout, checkpoint_every=settings.save_every,
        export_every=settings.save_every, cache_latents=True, seed=settings.seed,
        mixed_precision=settings.mixed_precision,
    )
    components = {name: getattr(pipe, name)
                  for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    summary = train_denoiser(components, {"unet": pipe.unet}, dataset, run_dir, loop,
                             resume=resume, on_export=on_export, log=log, progress=progress)
    return {**summary, "clips": len(dataset), "rank": settings.rank, "adapter": str(out_dir)}
