"""The LoRA adapter format: peft adapters on the UNet's attention projections.

One folder per adapter, written by ``flipsketch train lora`` and read by ``--lora
DIR[:SCALE]``::

    adapter_model.safetensors   the LoRA weights (peft state dict)
    adapter_config.json         peft's LoraConfig, with the base model it was trained on

``UNet3DConditionModel`` has no ``add_adapter``, so adapters are injected with peft directly.
Pickled weights (``adapter_model.bin``) load only with ``allow_pickle``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from flipsketch.errors import ModelLoadError, UsageError

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # every attention projection
ADAPTER_NAME = "default"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"
ADAPTER_CONFIG = "adapter_config.json"


def parse_lora(value: str) -> tuple[Path, float]:
    """"DIR" or "DIR:SCALE" -> (folder, scale)."""
    path, sep, scale = value.rpartition(":")
    if sep and path and re.fullmatch(r"-?\d+(\.\d+)?", scale):
        return Path(path), float(scale)
    return Path(value), 1.0


def inject_lora(unet: torch.nn.Module, rank: int, adapter_name: str = ADAPTER_NAME) -> None:
    """Add a LoRA of ``rank`` to every attention projection of ``unet`` (spatial, temporal and
    cross-attention) and make it the only trainable part.

    ``lora_alpha = rank`` keeps the scale at 1, and peft starts B at zero, so training starts
    from the base model exactly.
    """
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, lora_dropout=0.0)
    inject_adapter_in_model(config, unet, adapter_name=adapter_name)
    unet.requires_grad_(False)
    for name, param in unet.named_parameters():
        if "lora_" in name and f".{adapter_name}." in name:
            param.requires_grad_(True)


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
