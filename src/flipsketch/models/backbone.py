"""The ``modelscope`` backbone: loading a diffusers-layout text-to-video model.

It is given ``--model`` as the user typed it (``flipsketch.plugins.Backbone``) and resolves
it here, with ``flipsketch.models.presets``: a preset name, a local folder or a hub id. A
model is a diffusers-layout folder (``model_index.json``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``unet/``, ``scheduler/``) on the hub or on disk; ``flipsketch.models.store``
finds each part's folder on disk (downloading a hub model once). Each part is loaded on its
own, from exactly that folder: which is what lets a fine-tune that lacks a part take it from
its base model, ``--unet`` replace just the UNet, and any scheduler config be read as DDIM
(the method is defined on DDIM). Nothing else in a model's folder is read, such as the
pickled LoRA in ``lora/`` beside the authors' checkpoint.

Weights load from safetensors only; pickled weights need ``allow_pickle=True``
(``--allow-pickle``), because unpickling runs code from the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from flipsketch.devices import resolve_device, resolve_dtype
from flipsketch.errors import ModelLoadError
from flipsketch.models.footprint import check_parts
from flipsketch.models.presets import TINY_DIR, ModelSpec, is_local, resolve_model
from flipsketch.models.store import locate

if TYPE_CHECKING:  # diffusers loads with the first model, so the CLI starts quickly
    from flipsketch.sampler.pipeline import FlipSketchPipeline


def load_modelscope(model: str, *, unet: str | None = None, device: str | None = None,
                    dtype: str | None = None, allow_pickle: bool = False) -> FlipSketchPipeline:
    """The ``modelscope`` backbone: load each part of a diffusers-layout T2V model.

    ``model`` is a preset, folder or hub id and ``unet`` an optional fine-tune
    (``PATH_OR_ID[:SUBFOLDER]``); a name that is neither fails here, before diffusers loads.
    ``store.locate`` finds each part's folder on disk first (fetching a hub model that is not
    cached yet, unless offline), so every failure to find weights is one line naming the
    download command, and the loaders below only ever read local folders.
    """
    spec = resolve_model(model, unet=unet)
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    parts = locate(model, spec, allow_pickle=allow_pickle).parts
    check_parts(parts, model)  # a wrong class or a cut-short file: one line, not a traceback

    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as transformers_logging

    from flipsketch.models.frame_positions import load_unet
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    transformers_logging.disable_progress_bar()  # our own progress is on screen
    try:
        unet = load_unet(parts["unet"], dtype=torch_dtype,
                         **weights_format(model, "unet", parts["unet"], allow_pickle))
        # The VAE stays in fp32: it is small next to the UNet and fp16 VAEs overflow.
        vae = AutoencoderKL.from_pretrained(
            parts["vae"], dtype=torch.float32,
            **weights_format(model, "vae", parts["vae"], allow_pickle))
        text_encoder = CLIPTextModel.from_pretrained(
            parts["text_encoder"], dtype=torch_dtype,
            **weights_format(model, "text_encoder", parts["text_encoder"], allow_pickle))
        tokenizer = CLIPTokenizer.from_pretrained(parts["tokenizer"])
        scheduler = DDIMScheduler.from_pretrained(parts["scheduler"])
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_explain_load_failure(model, spec, exc, allow_pickle)) from exc
    pipe = FlipSketchPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              unet=unet, scheduler=scheduler)
    for module in (vae, text_encoder, unet):
        module.requires_grad_(False).eval()
    return pipe.to(target)


def weights_format(model: str, part: str, folder: Path, allow_pickle: bool) -> dict:
    """``use_safetensors`` for one part's folder: safetensors where there are any, pickled
    ``.bin`` weights only with ``allow_pickle``, because unpickling runs code from the file.

    Decided from the folder's files, so that a pickled part is refused by name before any
    loader opens it, and an allowed one loads without the loaders' fallback noise. Public: a
    backbone plugin loading its own parts refuses pickles the same way.
    """
    folder = Path(folder)
    if any(folder.glob("*.safetensors")):
        return {"use_safetensors": True}
    if allow_pickle:
        return {"use_safetensors": False}
    if any(folder.glob("*.bin")):
        raise ModelLoadError(f"the {part} of model '{model}' has only pickled weights "
                             f"({folder}); pass --allow-pickle to load them (unpickling runs "
                             "code from the file)")
    return {"use_safetensors": True}  # no weights at all: the loader says which file is missing


def _explain_load_failure(model: str, spec: ModelSpec, exc: Exception,
                          allow_pickle: bool) -> str:
    message = " ".join(str(exc).split())
    if spec.source == str(TINY_DIR) and not (TINY_DIR / "model_index.json").exists():
        return ("the embedded tiny model is missing from this installation; reinstall "
                "flipsketch or pass --model PATH to a diffusers model folder")
    if is_local(spec.source) and (spec.unet_source is None or is_local(spec.unet_source)):
        return (f"model folder '{spec.source}' is incomplete or not a diffusers text-to-video "
                f"folder ({message[:160]}); it needs unet/, vae/, text_encoder/, tokenizer/, "
                "scheduler/ with safetensors weights")
    if not allow_pickle and ("safetensors" in message or ".bin" in message):
        return (f"model '{model}' has no safetensors weights for a part ({message[:160]}); "
                f"pickled weights load only with --allow-pickle (`flipsketch models download "
                f"{model} --allow-pickle` fetches them)")
    return (f"model '{model}' could not be loaded ({message[:160]}); run `flipsketch models "
            f"download {model}` to complete or update its files")
