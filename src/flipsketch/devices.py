"""Where a run computes: the device, the dtype and this process's place among several.

Every part of flipsketch that loads a model or starts processes asks the same three questions
(the backbones, training, batch, the recipes' checks, evaluation, the AnimateDiff plugin), so
the answers live in this low-layer module rather than in one backbone that the others would
have to import: a plugin or a workflow depends on what a device is, not on how ModelScope
loads. Each answer to a bad ``--device`` / ``--dtype`` is one ``UsageError`` line naming the
fix.
"""

from __future__ import annotations

import os

import torch

from flipsketch.errors import UsageError

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def resolve_device(device: str | None) -> torch.device:
    """``--device`` as a ``torch.device``: the best one here when None (CUDA, then MPS, then
    the CPU); a name this machine lacks fails before any model loads."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise UsageError(f"unknown device '{device}'; use cpu, cuda, cuda:N or mps") from exc
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    if not available.get(resolved.type, False):
        raise UsageError(f"device '{device}' is not available here; use --device cpu")
    return resolved


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """fp32 on CPU, bf16 on CUDA, fp16 on MPS unless asked otherwise; fp16 is not for CPU."""
    if dtype is None:
        return {"cuda": torch.bfloat16, "mps": torch.float16}.get(device.type, torch.float32)
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype '{dtype}'; use fp32, bf16 or fp16")
    resolved = DTYPES[dtype]
    if device.type == "cpu" and resolved == torch.float16:
        raise UsageError("fp16 is not supported on the CPU; use --dtype fp32 or bf16")
    return resolved


def process_state(fix: str):
    """This process's place among those of an ``accelerate launch`` (alone: 0 of 1) and its
    device; ``fix`` completes the error when the processes cannot reach each other.

    ``--cpu`` reaches a worker only through the environment (``ACCELERATE_USE_CPU``), read
    here as accelerate's own ``Accelerator`` reads it, so the two agree.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    if int(os.environ.get("WORLD_SIZE", "1")) > state.num_processes:
        raise UsageError("accelerate started processes that cannot reach each other (no GPU); "
                         f"on CPUs run ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu ...{fix}")
    return state
