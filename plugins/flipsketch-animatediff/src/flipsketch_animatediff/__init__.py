"""flipsketch backbone plugin: Stable Diffusion 1.5 made temporal by an AnimateDiff adapter.

``--backbone animatediff`` loads a Stable Diffusion 1.5 model (VAE, CLIP text encoder and
tokenizer, 2D UNet) and an AnimateDiff ``MotionAdapter``, joins UNet and adapter into a
``UNetMotionModel`` (motion modules after the spatial layers of every block) and returns a
``FlipSketchPipeline``: FlipSketch's sampler, inversion, alignment and attention composition
then run on it unchanged. The built-in ``flipsketch`` composer steers its spatial
self-attention (``...attentions.N.transformer_blocks.M.attn1``) and the first temporal
self-attention of each motion module (``...motion_modules.N.transformer_blocks.M.attn1``).

What ``--model`` names (parsed by ``parse_model``):

- ``animatediff``: the defaults, ``DEFAULT_BASE`` + ``DEFAULT_ADAPTER`` from the hub;
- ``BASE+ADAPTER``: each a local folder or a hub id;
- ``BASE`` alone: its own ``motion_adapter/`` folder where it has one (the layout
  ``AnimateDiffPipeline.save_pretrained`` writes), else ``DEFAULT_ADAPTER``; a ``unet/``
  that is already a ``UNetMotionModel`` is used as it is.

BASE is a diffusers Stable Diffusion 1.5 layout (``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``), found and fetched like flipsketch's own models
(``flipsketch.api.locate``); ``--unet PATH_OR_ID[:SUBFOLDER]`` replaces its 2D UNet
(a DreamBooth fine-tune, say). The scheduler becomes DDIM with AnimateDiff's settings (linear
betas, linspace timesteps), which the adapters were trained with. Weights load from
safetensors only unless ``allow_pickle``.

Nothing heavy is imported until a model loads: the plugin is imported whenever flipsketch
starts, and ``flipsketch --help`` should not wait for torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from flipsketch.errors import ModelLoadError, UsageError
from flipsketch.plugins import Register, hookimpl

if TYPE_CHECKING:
    from flipsketch.api import FlipSketchPipeline

PRESET = "animatediff"
# The Stable Diffusion 1.5 weights' current home (runwayml/stable-diffusion-v1-5 was removed).
DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
ADAPTER_FOLDER = "motion_adapter"  # where AnimateDiffPipeline.save_pretrained puts it
# A unet/ saved with its motion modules: diffusers' class, or ours (a saved FlipSketchPipeline).
MOTION_UNET_CLASSES = ("UNetMotionModel", "FlipSketchMotionUNet")
# DDIM as AnimateDiff's model cards configure it: the motion modules were trained on SD 1.5's
# betas taken linearly (not "scaled_linear"), without sample clipping.
DDIM_SETTINGS = {"beta_schedule": "linear", "clip_sample": False,
                 "timestep_spacing": "linspace", "steps_offset": 1}

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# What to use when a hub model is out of reach (the core's own advice names its tiny model).
_INSTEAD = "use a local Stable Diffusion 1.5 folder"
_SYNTAX = (f"pass --model {PRESET} (the default hub models), a Stable Diffusion 1.5 folder or "
           "hub id, or BASE+ADAPTER")


def parse_model(model: str) -> tuple[str, str | None]:
    """``--model`` -> (base, adapter or None: the base's own or the default); each a local
    folder (made absolute, ``~`` expanded) or a hub id. Raises ``UsageError`` for anything
    else, before any weights are looked for."""
    if model == PRESET:
        return DEFAULT_BASE, DEFAULT_ADAPTER
    if _is_folder(model):  # a folder name may itself contain "+"
        return _source(model, "model"), None
    base, plus, adapter = model.partition("+")
    if plus and not adapter:
        raise UsageError(f"model '{model}' names no motion adapter after '+'; {_SYNTAX}")
    return _source(base, "model"), _source(adapter, "motion adapter") if plus else None


def _is_folder(name: str) -> bool:
    return Path(name).expanduser().is_dir()


def _source(name: str, what: str) -> str:
    if _is_folder(name):
        return str(Path(name).expanduser().resolve())
    if _HUB_ID.match(name) and not Path(name).suffix:
        return name
    raise UsageError(f"{what} '{name}' is neither a local folder nor a hub id like 'org/name' "
                     f"(the animatediff backbone); {_SYNTAX}")


def load_animatediff(model: str, *, unet: str | None, device: str | None, dtype: str | None,
                     allow_pickle: bool) -> FlipSketchPipeline:
    """The ``animatediff`` backbone (``flipsketch.plugins.Backbone``): see the module doc."""
    import torch

    from flipsketch.api import ModelSpec, locate, resolve_device, resolve_dtype, weights_format

    base, adapter_source = parse_model(model)
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    spec = ModelSpec(base)
    if unet is not None:
        unet_source, _, unet_subfolder = unet.partition(":")
        spec = ModelSpec(base, unet_source=unet_source, unet_subfolder=unet_subfolder)
    # Each part's folder, fetched once; out of reach, the way out is not the core's tiny model.
    files = locate(base, spec, allow_pickle=allow_pickle, instead=_INSTEAD)
    parts = files.parts
    # A UNet saved with its motion modules (AnimateDiffPipeline's) needs an adapter only when
    # one is named; a 2D UNet takes the folder's own adapter, else the default one.
    motion_ready = _class_name(parts["unet"]) in MOTION_UNET_CLASSES
    if adapter_source is None and not motion_ready:
        own = files.root / ADAPTER_FOLDER
        adapter_source = str(own) if _is_folder(base) and own.is_dir() else DEFAULT_ADAPTER
    adapter_folder = None
    if adapter_source is not None:
        adapter_folder = _adapter_folder(adapter_source, allow_pickle)

    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as transformers_logging

    from flipsketch.api import FlipSketchPipeline
    from flipsketch_animatediff.unet import FlipSketchMotionUNet, motion_unet

    diffusers_logging.disable_progress_bar()  # flipsketch draws its own progress
    transformers_logging.disable_progress_bar()
    try:
        adapter = None
        if adapter_folder is not None:
            adapter = MotionAdapter.from_pretrained(
                adapter_folder, dtype=torch_dtype,
                **weights_format(model, "motion adapter", adapter_folder, allow_pickle))
        if motion_ready:  # an AnimateDiffPipeline folder: the adapter is in the UNet already
            motion = FlipSketchMotionUNet.from_pretrained(
                parts["unet"], dtype=torch_dtype,
                **weights_format(model, "unet", parts["unet"], allow_pickle))
            if adapter is not None:  # BASE+ADAPTER: the named adapter's motion modules win
                motion.load_motion_modules(adapter)
        else:
            unet2d = UNet2DConditionModel.from_pretrained(
                parts["unet"], dtype=torch_dtype,
                **weights_format(model, "unet", parts["unet"], allow_pickle))
            motion = motion_unet(unet2d, adapter)
        # The VAE stays in fp32, as in the modelscope backbone: SD's VAE overflows in fp16.
        vae = AutoencoderKL.from_pretrained(
            parts["vae"], dtype=torch.float32,
            **weights_format(model, "vae", parts["vae"], allow_pickle))
        text_encoder = CLIPTextModel.from_pretrained(
            parts["text_encoder"], dtype=torch_dtype,
            **weights_format(model, "text_encoder", parts["text_encoder"], allow_pickle))
        tokenizer = CLIPTokenizer.from_pretrained(parts["tokenizer"])
        scheduler = DDIMScheduler.from_pretrained(parts["scheduler"], **DDIM_SETTINGS)
    except (OSError, ValueError) as exc:
        message = " ".join(str(exc).split())[:200]
        raise ModelLoadError(f"model '{model}' could not be loaded as Stable Diffusion 1.5 + "
                             f"an AnimateDiff motion adapter ({message}); {_SYNTAX}") from exc
    pipe = FlipSketchPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              unet=motion, scheduler=scheduler)
    for module in (vae, text_encoder, motion):
        module.requires_grad_(False).eval()
    return pipe.to(target)


def _class_name(folder: Path) -> str | None:
    """The ``_class_name`` of a diffusers model folder's ``config.json``."""
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def _adapter_folder(source: str, allow_pickle: bool) -> Path:
    """The motion adapter's folder on disk: a local folder as it is, a hub id fetched into the
    Hugging Face cache (its config and full-precision weights only) unless it is there."""
    if _is_folder(source):
        return Path(source)
    from flipsketch.api import hub_snapshot

    kinds = ["*.json", "*.safetensors", *(["*.bin"] if allow_pickle else [])]
    return hub_snapshot(source, kinds, what=f"motion adapter '{source}'",
                        fix=f"hf download {source} --exclude '*.fp16.*'",
                        instead="pass BASE+ADAPTER with a local adapter folder")


@hookimpl
def register_backbones(register: Register) -> None:
    register(PRESET, load_animatediff)
