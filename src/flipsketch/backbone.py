"""Where models come from: presets, hub ids, local folders, fine-tuned UNets and LoRAs.

A model is a diffusers-layout folder (``model_index.json``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``unet/``, ``scheduler/``) on the hub or on disk. Each part is loaded on its
own, which is what lets the authors' sketch fine-tune replace just the base UNet, and what
lets any scheduler config be read as DDIM (the method is defined on DDIM).

Weights load from safetensors only; pickled weights need ``allow_pickle=True``
(``--allow-pickle``), because unpickling runs code from the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from flipsketch.errors import ModelLoadError, UsageError
from flipsketch.hookspecs import hookimpl

if TYPE_CHECKING:  # diffusers loads with the first model, so the CLI starts quickly
    from flipsketch.pipeline import FlipSketchPipeline

TINY_MODEL_DIR = Path(__file__).parent / "models" / "tiny"
MODELSCOPE_BASE = "damo-vilab/text-to-video-ms-1.7b"
SKETCH_FINETUNE = "Hmrishav/t2v_sketch-lora"


@dataclass(frozen=True)
class ModelSpec:
    """A model to load: a base folder or hub id, optionally with another UNet."""

    source: str
    subfolder: str = ""
    unet_source: str | None = None  # a fine-tune whose unet/ replaces the base UNet
    unet_subfolder: str = ""
    description: str = ""


PRESETS: dict[str, ModelSpec] = {
    "tiny": ModelSpec(
        str(TINY_MODEL_DIR),
        description="embedded 128-px sketch animator trained for this package (CPU-friendly)",
    ),
    "modelscope-sketch": ModelSpec(
        MODELSCOPE_BASE, unet_source=SKETCH_FINETUNE, unet_subfolder="checkpoint-2500",
        description="ModelScope T2V 1.7B with the FlipSketch authors' sketch fine-tune (GPU)",
    ),
    "modelscope": ModelSpec(MODELSCOPE_BASE, description="ModelScope T2V 1.7B base (GPU)"),
}

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve_model(name: str, unet: str | None = None) -> ModelSpec:
    """A preset name, a local diffusers folder or a hub id -> ``ModelSpec``.

    ``unet`` optionally names a fine-tune ("PATH_OR_ID" or "PATH_OR_ID:SUBFOLDER") whose
    ``unet/`` replaces the model's UNet.
    """
    if name in PRESETS:
        spec = PRESETS[name]
    elif Path(name).expanduser().is_dir():
        spec = ModelSpec(str(Path(name).expanduser()))
    elif _HUB_ID.match(name) and not Path(name).suffix:
        spec = ModelSpec(name)
    else:
        raise UsageError(
            f"model '{name}' is neither a preset ({', '.join(PRESETS)}), a local folder nor "
            "a hub id like 'org/name'; pass --model tiny or a diffusers model folder"
        )
    if unet is not None:
        source, _, subfolder = unet.partition(":")
        spec = ModelSpec(spec.source, spec.subfolder, source, subfolder, spec.description)
    return spec


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


def load_modelscope(spec: ModelSpec, *, device: str | None = None, dtype: str | None = None,
                    allow_pickle: bool = False) -> FlipSketchPipeline:
    """The ``modelscope`` backbone: load each part of a diffusers-layout T2V model."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as transformers_logging

    from flipsketch.frame_positions import load_unet
    from flipsketch.pipeline import FlipSketchPipeline

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
    if spec.source == str(TINY_MODEL_DIR) and not (TINY_MODEL_DIR / "model_index.json").exists():
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


# -- LoRA adapters (peft) ---------------------------------------------------------------------
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"
ADAPTER_CONFIG = "adapter_config.json"


def parse_lora(value: str) -> tuple[Path, float]:
    """"DIR" or "DIR:SCALE" -> (folder, scale)."""
    path, sep, scale = value.rpartition(":")
    if sep and path and re.fullmatch(r"-?\d+(\.\d+)?", scale):
        return Path(path), float(scale)
    return Path(value), 1.0


def save_lora(unet, folder: Path, adapter_name: str = "default",
              base_model: str | None = None) -> Path:
    """Write the peft adapter ``adapter_name`` of ``unet`` in the layout ``apply_loras`` reads.

    ``base_model`` is recorded so a mismatch can be named when the adapter is loaded.
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    config = unet.peft_config[adapter_name]
    config.base_model_name_or_path = base_model
    folder.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(unet, adapter_name=adapter_name,
                                     save_embedding_layers=False)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()},
              folder / ADAPTER_WEIGHTS)
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config.to_dict(), indent=2, default=list))
    return folder


def apply_loras(unet, loras: list[tuple[Path, float]], allow_pickle: bool = False) -> None:
    """Inject peft LoRA adapters into ``unet`` and activate them together with their scales.

    ``UNet3DConditionModel`` has no ``add_adapter``, so adapters are injected with peft
    directly; a LoRA trained for another base fails here with a clear message instead of a
    shape traceback.
    """
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from peft.tuners.lora import LoraLayer
    from safetensors.torch import load_file

    names = []
    for index, (folder, scale) in enumerate(loras):
        config_file, weights_file = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
        if not config_file.is_file():
            raise UsageError(f"LoRA '{folder}' has no {ADAPTER_CONFIG}; pass the folder that "
                             "`flipsketch train lora` wrote")
        if weights_file.is_file():
            state = load_file(weights_file)
        elif (folder / ADAPTER_PICKLE).is_file() and allow_pickle:
            state = torch.load(folder / ADAPTER_PICKLE, map_location="cpu", weights_only=False)
        elif (folder / ADAPTER_PICKLE).is_file():
            raise ModelLoadError(f"LoRA '{folder}' is pickled ({ADAPTER_PICKLE}); pickles load "
                                 "only with --allow-pickle")
        else:
            raise UsageError(f"LoRA '{folder}' has no {ADAPTER_WEIGHTS}")
        raw = json.loads(config_file.read_text())
        config = LoraConfig(**{k: v for k, v in raw.items()
                               if k in LoraConfig.__dataclass_fields__})
        name = f"lora_{index}"
        try:
            inject_adapter_in_model(config, unet, adapter_name=name)
            result = set_peft_model_state_dict(unet, state, adapter_name=name)
        except (RuntimeError, ValueError) as exc:
            raise ModelLoadError(
                f"LoRA '{folder}' does not fit this model (trained for "
                f"{raw.get('base_model_name_or_path') or 'another base model'}): "
                f"{' '.join(str(exc).split())[:160]}; use it with the --model it was trained on"
            ) from exc
        missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if missing:
            raise ModelLoadError(f"LoRA '{folder}' has {len(missing)} weights this model has no "
                                 "place for; use it with the --model it was trained on")
        names.append((name, scale))
    for module in unet.modules():
        if isinstance(module, LoraLayer):
            module.set_adapter([name for name, _ in names])
            for name, scale in names:
                if name in module.scaling:
                    module.set_scale(name, scale)
    unet.requires_grad_(False)


@hookimpl
def register_backbones(register) -> None:
    register("modelscope", load_modelscope)
