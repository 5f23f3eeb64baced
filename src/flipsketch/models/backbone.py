"""The ``modelscope`` backbone: loading a diffusers-layout text-to-video model.

It is given ``--model`` as the user typed it (``flipsketch.plugins.Backbone``) and resolves
it here, with ``flipsketch.models.presets``: a preset name, a local folder or a hub id. A
model is a diffusers-layout folder (``model_index.json``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``unet/``, ``scheduler/``) on the hub or on disk. Each part is loaded on its
own, which is what lets the authors' sketch fine-tune replace just the base UNet, and what
lets any scheduler config be read as DDIM (the method is defined on DDIM).

Weights load from safetensors only; pickled weights need ``allow_pickle=True``
(``--allow-pickle``), because unpickling runs code from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from flipsketch.errors import ModelLoadError, UsageError
from flipsketch.models.presets import TINY_DIR, ModelSpec, resolve_model
from flipsketch.plugins import hookimpl

if TYPE_CHECKING:  # diffusers loads with the first model, so the CLI starts quickly
    from flipsketch.sampler.pipeline import FlipSketchPipeline


def resolve_device(device: str | None) -> torch.device:
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


DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


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


def _subfolder(*parts: str) -> str | None:
    joined = "/".join(p.strip("/") for p in parts if p)
    return joined or None


def load_modelscope(model: str, *, unet: str | None = None, device: str | None = None,
                    dtype: str | None = None, allow_pickle: bool = False) -> FlipSketchPipeline:
    """The ``modelscope`` backbone: load each part of a diffusers-layout T2V model.

    ``model`` is a preset, folder or hub id and ``unet`` an optional fine-tune
    (``PATH_OR_ID[:SUBFOLDER]``); a name that is neither fails here, before diffusers loads.
    """
    spec = resolve_model(model, unet=unet)

    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as transformers_logging

    from flipsketch.models.frame_positions import load_unet
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    transformers_logging.disable_progress_bar()  # our own progress is on screen
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    weights = {"use_safetensors": None if allow_pickle else True}
    source = spec.source
    try:
        unet = load_unet(
            spec.unet_source or source,
            subfolder=_subfolder(spec.unet_subfolder if spec.unet_source else spec.subfolder,
                                 "unet"),
            torch_dtype=torch_dtype, **weights)
        # The VAE stays in fp32: it is small next to the UNet and fp16 VAEs overflow.
        vae = AutoencoderKL.from_pretrained(source, subfolder=_subfolder(spec.subfolder, "vae"),
                                            torch_dtype=torch.float32, **weights)
        text_encoder = CLIPTextModel.from_pretrained(
            source, subfolder=_subfolder(spec.subfolder, "text_encoder"),
            torch_dtype=torch_dtype, **weights)
        tokenizer = CLIPTokenizer.from_pretrained(
            source, subfolder=_subfolder(spec.subfolder, "tokenizer"))
        scheduler = DDIMScheduler.from_pretrained(
            source, subfolder=_subfolder(spec.subfolder, "scheduler"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_explain_load_failure(spec, exc, allow_pickle)) from exc
    pipe = FlipSketchPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              unet=unet, scheduler=scheduler)
    for module in (vae, text_encoder, unet):
        module.requires_grad_(False).eval()
    return pipe.to(target)


def _explain_load_failure(spec: ModelSpec, exc: Exception, allow_pickle: bool) -> str:
    message = " ".join(str(exc).split())
    local = Path(spec.source).is_dir()
    if spec.source == str(TINY_DIR) and not (TINY_DIR / "model_index.json").exists():
        return ("the embedded tiny model is missing from this installation; reinstall "
                "flipsketch or pass --model PATH to a diffusers model folder")
    if not allow_pickle and ("safetensors" in message or ".bin" in message):
        return (f"model '{spec.source}' has no safetensors weights for a part ({message[:160]}); "
                "pickled weights load only with --allow-pickle")
    if local:
        return (f"model folder '{spec.source}' is incomplete or not a diffusers text-to-video "
                f"folder ({message[:160]}); it needs unet/, vae/, text_encoder/, tokenizer/, "
                "scheduler/")
    sources = " and ".join(s for s in (spec.source, spec.unet_source) if s)
    return (f"weights for '{sources}' are not available offline and could not be downloaded; "
            f"run `huggingface-cli download {spec.source}` on a connected machine (or pass "
            "--model PATH to a local copy), or use --model tiny")


@hookimpl
def register_backbones(register) -> None:
    register("modelscope", load_modelscope)
