"""The paper's two scores (Table 1): CLIP sketch-to-video consistency, X-CLIP text alignment.

- Sketch-to-video consistency (``ClipConsistency``): the cosine similarity of CLIP image
  embeddings between the input sketch and each frame of the animation, averaged over the
  frames. The paper defines it as "the average similarity score between input and generated
  frames" (Sec. 5.1, following Live-Sketch); every frame FlipSketch outputs is generated,
  frame 1 included, so frame 1 counts like the others.
- Text-to-video alignment (``XClipAlignment``): X-CLIP's similarity between the animation and
  its prompt, as a cosine in [-1, 1] (the logit divided by X-CLIP's logit scale), which is the
  scale of the paper's 0.13-0.18. X-CLIP sees a fixed number of frames
  (``config.vision_config.num_frames``, 8 for the base models), sampled evenly over the clip.

Each scorer loads its model once (``load_clip_consistency``, ``load_xclip_alignment``: a hub
id or a local folder) and then scores any number of animations; ``score_many`` batches them,
which is what ranking K samples of one sketch (best-of-K) wants. Models run in float32 in
evaluation mode, so a score does not depend on the device's default precision.

Frames are PIL images or the package's ``(F, H, W)`` float arrays in [0, 1] (1 = white); a
sketch is a PIL image or an ``(H, W)`` array. Grey becomes RGB and transparency is laid on
white paper before the model's own processor resizes and normalises.

Weights load from safetensors only unless ``allow_pickle=True`` (unpickling runs code from
the file), as for the video model (``models/backbone.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from flipsketch.errors import ModelLoadError, UsageError
from flipsketch.frames.images import array_to_images

if TYPE_CHECKING:
    import torch

# What the paper's metrics are reproduced with (the paper names neither checkpoint; see
# docs/evaluation.md): CLIP ViT-B/32, which the authors' demo also ranks its samples with,
# and the base X-CLIP (ViT-B/32, 8 frames).
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEFAULT_XCLIP = "microsoft/xclip-base-patch32"

# Images per forward pass in ``score_many``: bounds memory, not results.
BATCH_IMAGES = 64

Frames = np.ndarray | Sequence[Image.Image] | Sequence[np.ndarray]
Sketch = Image.Image | np.ndarray

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


# -- pixels ----------------------------------------------------------------------------------

def _rgb(image: Image.Image) -> Image.Image:
    """Any PIL image -> RGB, transparent pixels laid on white paper (not on black)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def as_rgb_frames(frames: Frames) -> list[Image.Image]:
    """PIL frames or an ``(F, H, W)`` float stack in [0, 1] -> RGB PIL frames."""
    if not isinstance(frames, np.ndarray) and all(isinstance(f, Image.Image) for f in frames):
        images = list(frames)
    else:
        images = array_to_images(np.asarray(frames, dtype=np.float32))
    if not images:
        raise ValueError("an animation needs at least one frame")
    return [_rgb(image) for image in images]


def as_rgb_sketch(sketch: Sketch) -> Image.Image:
    """A PIL sketch or an ``(H, W)`` float array in [0, 1] -> one RGB image."""
    if isinstance(sketch, Image.Image):
        return _rgb(sketch)
    return as_rgb_frames(np.asarray(sketch, dtype=np.float32)[None])[0]


def sample_frames(frames: Sequence[Image.Image], count: int) -> list[Image.Image]:
    """``count`` frames spread evenly from the first to the last (repeats if too few)."""
    indices = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in indices]


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- loading ---------------------------------------------------------------------------------

def check_source(name_or_path: str, option: str) -> None:
    """Fail now, before any model loads, on a name that is neither a folder nor a hub id."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise UsageError(f"{option} '{name_or_path}' is a file; pass the model's folder (the "
                         f"one holding config.json) or a hub id like 'org/name'")
    # 'models/clip' fits a hub id's pattern too; with a local models/ it meant the folder.
    if not _HUB_ID.match(name_or_path) or path.suffix or path.parent.is_dir():
        raise UsageError(f"{option} '{name_or_path}': no such folder, and not a hub id like "
                         f"'org/name'; check the path")


@dataclass
class _Loaded:
    model: Any  # a transformers PreTrainedModel, in eval mode on ``device``
    image_processor: Any
    tokenizer: Any
    device: torch.device


def _load(name_or_path: str, kind: str, device: str | None, allow_pickle: bool,
          option: str) -> _Loaded:
    """Config first (cheap, and a CLIP folder must not load as X-CLIP with random weights),
    then the model in float32, the PIL image processor and the tokenizer."""
    import torch
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoTokenizer,
        CLIPModel,
        XCLIPModel,
    )
    from transformers.utils import logging as transformers_logging

    from flipsketch.devices import resolve_device

    model_class, label, example = {"clip": (CLIPModel, "CLIP", DEFAULT_CLIP),
                                   "xclip": (XCLIPModel, "X-CLIP", DEFAULT_XCLIP)}[kind]
    check_source(name_or_path, option)
    folder = Path(name_or_path).expanduser()
    source = str(folder) if folder.is_dir() else name_or_path
    target = resolve_device(device)
    transformers_logging.disable_progress_bar()  # the CLI shows its own status
    try:
        config = AutoConfig.from_pretrained(source)
        if config.model_type != kind:
            raise ModelLoadError(
                f"{option} '{name_or_path}' is a '{config.model_type}' model, not '{kind}'; "
                f"pass a {label} checkpoint such as {example}")
        model = model_class.from_pretrained(
            source, config=config, dtype=torch.float32,
            use_safetensors=None if allow_pickle else True)
        # The PIL backend everywhere: the same resizing with or without torchvision installed.
        image_processor = AutoImageProcessor.from_pretrained(source, backend="pil")
        tokenizer = AutoTokenizer.from_pretrained(source) if kind == "xclip" else None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_explain(name_or_path, option, exc, allow_pickle)) from exc
    model.requires_grad_(False).eval().to(target)
    return _Loaded(model, image_processor, tokenizer, target)


def _explain(name_or_path: str, option: str, exc: Exception, allow_pickle: bool) -> str:
    message = " ".join(str(exc).split())[:160]
    if not allow_pickle and "safetensors" in message:
        return (f"{option} '{name_or_path}' has no safetensors weights ({message}); pickled "
                "weights load only with --allow-pickle (allow_pickle=True), which runs code "
                "from the file")
    if Path(name_or_path).expanduser().is_dir():
        return (f"{option} folder '{name_or_path}' is incomplete ({message}); it needs "
                "config.json, model.safetensors and the processor and tokenizer files that "
                "save_pretrained writes")
    return (f"{option} model '{name_or_path}' is not available offline and could not be "
            f"downloaded; run `hf download {name_or_path}` on a connected machine, or pass "
            f"{option} PATH to a local copy")


def _pixels(image_processor, images: Sequence[Image.Image]) -> torch.Tensor:
    """``(n, 3, H, W)`` model input; video processors (X-CLIP's hub folders use VideoMAE's)
    return ``(1, n, 3, H, W)`` for a list of frames, image processors ``(n, 3, H, W)``."""
    pixels = image_processor(images=list(images), return_tensors="pt")["pixel_values"]
    return pixels.reshape(-1, *pixels.shape[-3:])


# -- the scorers -----------------------------------------------------------------------------

class ClipConsistency:
    """Sketch-to-video consistency: mean CLIP image-embedding cosine, sketch vs each frame.

    1.0 for frames identical to the sketch, lower for anything else; the paper's rows span
    0.78-0.97, so differences in the second decimal matter. Give the sketch framed as the
    frames are (``api.prepare_sketch`` at the model's resolution): CLIP's processor
    centre-crops, so a wide drawing as drawn would lose its sides.
    """

    def __init__(self, loaded: _Loaded, name: str) -> None:
        self._model, self._processor = loaded.model, loaded.image_processor
        self.device, self.name = loaded.device, name

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_CLIP, device: str | None = None,
             allow_pickle: bool = False, option: str = "--clip") -> ClipConsistency:
        """A CLIP model (hub id or ``save_pretrained`` folder) on ``device`` (default: the
        best available); a missing, offline or non-CLIP model is a one-line
        ``ModelLoadError``/``UsageError`` naming ``option``, the flag that named it."""
        return cls(_load(name_or_path, "clip", device, allow_pickle, option), name_or_path)

    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Unit-length CLIP image embeddings ``(n, d)`` of RGB images, on the CPU."""
        import torch

        parts = []
        with torch.inference_mode():
            for chunk in _chunks(images, BATCH_IMAGES):
                pixels = _pixels(self._processor, chunk).to(self.device)
                features = self._model.get_image_features(pixel_values=pixels).pooler_output
                parts.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
        return torch.cat(parts)

    def score(self, sketch: Sketch, frames: Frames) -> float:
        """Mean cosine similarity of the sketch and every frame (frame 1 included)."""
        return self.score_many(sketch, [frames])[0]

    def score_many(self, sketch: Sketch, animations: Sequence[Frames]) -> list[float]:
        """``score`` for several animations of one sketch, in batched forward passes: the
        sketch is embedded once, the frames of all animations together."""
        clips = [as_rgb_frames(frames) for frames in animations]
        if not clips:
            return []
        embeddings = self.embed([as_rgb_sketch(sketch), *(f for clip in clips for f in clip)])
        similarity = embeddings[1:] @ embeddings[0]  # (total frames,)
        scores, start = [], 0
        for clip in clips:
            scores.append(float(similarity[start:start + len(clip)].mean()))
            start += len(clip)
        return scores


class XClipAlignment:
    """Text-to-video alignment: X-CLIP's video-text cosine similarity, in [-1, 1].

    X-CLIP's own logits are this cosine times ``exp(logit_scale)`` (100 for the released
    models); the paper's numbers (0.127-0.174) are on the cosine scale, so that is reported.
    """

    def __init__(self, loaded: _Loaded, name: str) -> None:
        self._model, self._processor = loaded.model, loaded.image_processor
        self._tokenizer = loaded.tokenizer
        self.device, self.name = loaded.device, name
        self.num_frames: int = loaded.model.config.vision_config.num_frames

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_XCLIP, device: str | None = None,
             allow_pickle: bool = False) -> XClipAlignment:
        """An X-CLIP model (hub id or ``save_pretrained`` folder with its processor and
        tokenizer) on ``device``; failures as ``ClipConsistency.load``."""
        return cls(_load(name_or_path, "xclip", device, allow_pickle, "--xclip"), name_or_path)

    def score(self, prompt: str, frames: Frames) -> float:
        """Cosine similarity of the animation (``num_frames`` frames sampled evenly, first
        and last included) and the prompt."""
        return self.score_many([prompt], [frames])[0]

    def score_many(self, prompts: Sequence[str], animations: Sequence[Frames]) -> list[float]:
        """``score(prompts[i], animations[i])`` for every i, several videos per pass."""
        import torch

        if len(prompts) != len(animations):
            raise ValueError(f"{len(prompts)} prompts for {len(animations)} animations")
        scores: list[float] = []
        per_pass = max(1, BATCH_IMAGES // self.num_frames)
        with torch.inference_mode():
            for start in range(0, len(prompts), per_pass):
                texts = list(prompts[start:start + per_pass])
                videos = [sample_frames(as_rgb_frames(frames), self.num_frames)
                          for frames in animations[start:start + per_pass]]
                pixels = _pixels(self._processor, [f for video in videos for f in video])
                pixels = pixels.reshape(len(videos), self.num_frames, *pixels.shape[-3:])
                tokens = self._tokenizer(texts, padding=True, truncation=True,
                                         return_tensors="pt").to(self.device)
                output = self._model(input_ids=tokens["input_ids"],
                                     attention_mask=tokens["attention_mask"],
                                     pixel_values=pixels.to(self.device))
                # logits_per_video[v, t]: video v against prompt t (the prompt conditioned on
                # video v); each video's own prompt is the diagonal.
                cosine = output.logits_per_video.diagonal() / self._model.logit_scale.exp()
                scores.extend(float(c) for c in cosine.float().cpu())
        return scores


def load_clip_consistency(name_or_path: str = DEFAULT_CLIP, device: str | None = None,
                          allow_pickle: bool = False,
                          option: str = "--clip") -> ClipConsistency:
    """The sketch-to-video consistency scorer: ``.score(sketch, frames) -> float`` and
    ``.score_many(sketch, [frames, ...]) -> list[float]`` (see ``ClipConsistency``)."""
    return ClipConsistency.load(name_or_path, device, allow_pickle, option)


def load_xclip_alignment(name_or_path: str = DEFAULT_XCLIP, device: str | None = None,
                         allow_pickle: bool = False) -> XClipAlignment:
    """The text-to-video alignment scorer: ``.score(prompt, frames) -> float`` and
    ``.score_many(prompts, animations) -> list[float]`` (see ``XClipAlignment``)."""
    return XClipAlignment.load(name_or_path, device, allow_pickle)
