"""Which models ``--model`` can name: presets, local diffusers folders and hub ids.

These are the names of the built-in ``modelscope`` backbone, which resolves ``--model`` here
before it loads anything; other backbones accept names of their own. Resolving touches no
weights and imports no model library, so recipes check their model with it before any step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flipsketch.errors import UsageError

TINY_DIR = Path(__file__).parent / "weights" / "tiny"  # the shipped weights
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
        str(TINY_DIR),
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
