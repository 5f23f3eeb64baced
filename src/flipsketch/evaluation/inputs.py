"""What the evaluation runs read: prompt files, folders of drawings, and their sampler settings.

Each reader checks its input completely and raises a one-line ``UsageError`` naming the file,
so a bad prompt file or an empty folder is found before any model loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flipsketch.api import SamplerSettings, prepare_sketch
from flipsketch.errors import UsageError
from flipsketch.training.synth import MOTIONS, TRANSLATIONS

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# Prompts for the sketch bar when none are given: the four translations, in the training
# captions' words, which is what the direction check understands.
DEFAULT_PROMPTS = tuple(f"a {{subject}} {MOTIONS[motion][0]}" for motion in TRANSLATIONS)


def read_prompts(path: Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with # are skipped."""
    if not path.is_file():
        raise UsageError(f"prompts file '{path}' does not exist; pass a text file with one "
                         f"prompt per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"prompts file '{path}' cannot be read ({exc}); save it as UTF-8 "
                         f"text") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not prompts:
        raise UsageError(f"prompts file '{path}' has no prompts; write one prompt per line")
    return prompts


def read_sketches(folder: Path) -> list[tuple[str, Image.Image]]:
    """(file stem, image) for every image file in ``folder``, each decoded now."""
    from PIL import Image

    from flipsketch.frames.images import load_sketch

    if not folder.is_dir():
        raise UsageError(f"sketch folder '{folder}' does not exist; pass a folder of drawings")
    suffixes = Image.registered_extensions()
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes)
    if not files:
        raise UsageError(f"sketch folder '{folder}' holds no images; add PNG/JPEG/WebP drawings")
    return [(path.stem, load_sketch(path)) for path in files]


def as_arrays(drawings: list[tuple[str, Image.Image]],
              size: int) -> list[tuple[str, np.ndarray]]:
    """Drawings -> (name, (size, size) grey) exactly as the sampler will see them."""
    return [(name, prepare_sketch(image, size).numpy()) for name, image in drawings]


def eval_settings(steps: int, frames: int, paper: bool = False) -> SamplerSettings:
    """The sampler settings of an evaluation run (the paper's numbers, but for steps and
    frames; ``paper``: the paper's sampler, else the toolkit's), validated now rather than at
    the first sample."""
    settings = SamplerSettings(num_frames=frames, num_inference_steps=steps, paper=paper)
    settings.validate()
    return settings
