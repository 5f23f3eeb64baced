"""Checkpoints of a training run, and the EMA of its weights.

A checkpoint holds only the trainable weights (a LoRA checkpoint of ModelScope stays small),
their EMA, the optimiser, the LR schedule, every process's RNG state and the step, written
through a temporary folder so that a crash never leaves half of one: ``resume`` then goes on
exactly as an uninterrupted run would (``training.loop``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from flipsketch.errors import UsageError
from flipsketch.files import replace_atomically

CHECKPOINT_PREFIX = "checkpoint-"


class EMA:
    """Exponential moving average of named tensors, with the usual warm-up so that early
    exports are not dominated by the random initialisation."""

    def __init__(self, named: dict[str, torch.Tensor], decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in named.items()}

    @torch.no_grad()
    def update(self, named: dict[str, torch.Tensor], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        # One multi-tensor call instead of a kernel per tensor (hundreds of them).
        torch._foreach_lerp_([self.shadow[k] for k in named],
                             [v.detach().float() for v in named.values()], 1 - decay)


def named_trainable(models: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Parameter]:
    """``{"unet.down_blocks.0...": param}`` for every parameter that trains."""
    return {f"{part}.{name}": p for part, model in models.items()
            for name, p in model.named_parameters() if p.requires_grad}


def load_weights(models: dict[str, torch.nn.Module], weights: dict[str, torch.Tensor]) -> None:
    """Copy ``{"part.param": tensor}`` into ``models`` (the inverse of ``named_trainable``)."""
    for part, model in models.items():
        prefix = f"{part}."
        mine = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if not mine:
            continue
        missing = set(mine) - set(model.state_dict())
        if missing:
            raise UsageError(f"checkpoint weights do not fit the {part} ({sorted(missing)[0]}, "
                             "...); use the config the run was started with")
        model.load_state_dict(mine, strict=False)


def checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    run_dir = Path(run_dir)
    found = [p for p in run_dir.glob(f"{CHECKPOINT_PREFIX}*")
             if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit()
             and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def checkpoint_weights(checkpoint: str | os.PathLike, ema: bool = True) -> dict:
    """A checkpoint's trainable weights, the EMA ones when kept and ``ema`` is asked for."""
    checkpoint = Path(checkpoint)
    path = checkpoint / "ema.safetensors"
    if not (ema and path.is_file()):
        path = checkpoint / "trainable.safetensors"
    return load_file(path)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def export_weights(named: dict[str, torch.Tensor], ema: EMA | None) -> dict[str, torch.Tensor]:
    if ema is not None:
        return {k: v.cpu().clone() for k, v in ema.shadow.items()}
    return {k: v.detach().float().cpu().clone() for k, v in named.items()}


def save_checkpoint(run_dir: Path, step: int, accelerator: Accelerator,
                     named: dict[str, torch.Tensor], optimizer, lr_scheduler,
                     ema: EMA | None, keep: int) -> Path:
    """Write ``checkpoint-<step>`` via a temp folder, so a crash never leaves half of one.

    The temp folder's name is fixed, not random as ``files.atomic_path``'s, because every
    process writes its RNG state into it; a crash leaves it for the next run to delete.
    """
    final = run_dir / f"{CHECKPOINT_PREFIX}{step:07d}"
    tmp = run_dir / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(_rng_state(), tmp / f"rng_{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in named.items()},
                  tmp / "trainable.safetensors")
        if ema is not None:
            save_file({k: v.cpu() for k, v in ema.shadow.items()}, tmp / "ema.safetensors")
        torch.save({"optimizer": optimizer.state_dict(),
                    "lr_scheduler": lr_scheduler.state_dict()}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step}) + "\n")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_atomically(tmp, final)  # a checkpoint of this step, if any, goes only now
        for old in checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: Path, accelerator: Accelerator, models: dict[str, torch.nn.Module],
                     optimizer, lr_scheduler, ema: EMA | None) -> int:
    """Restore everything ``save_checkpoint`` wrote; returns the step."""
    load_weights(models, load_file(path / "trainable.safetensors"))
    if ema is not None and (path / "ema.safetensors").is_file():
        ema.shadow = load_file(path / "ema.safetensors", device=str(accelerator.device))
    state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    rng = path / f"rng_{accelerator.process_index}.pt"
    if rng.is_file():  # absent when resuming on more processes than saved: fresh per-rank seed
        _set_rng_state(torch.load(rng, weights_only=False))
    return json.loads((path / "state.json").read_text())["step"]
