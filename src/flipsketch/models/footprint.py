"""What a model needs before it is loaded: its sizes read from its files, the peak memory of
one request, and the memory a device has free.

Loading a 1.7 B-parameter model takes a minute; finding out after that (or after an hour of
swapping) that 64 frames x 8 samples never fit is the worst way to learn it. Everything here
reads only small files: each part's ``config.json`` and the JSON header at the start of each
``.safetensors`` file, which lists every tensor's dtype, shape and byte range. The headers
also give two checks for free: a truncated weights file (its header promises more bytes than
the file holds) and a part whose ``config.json`` names another class.

``estimate_peak_bytes`` is a deliberately simple formula, calibrated on the embedded model
and meant to tell "fits" from "cannot possibly fit", not to predict the last megabyte.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flipsketch.errors import ModelLoadError

# The class each part's config.json must name, for the parts the ``modelscope`` backbone
# loads as a fixed class (the scheduler's config is read as DDIM whatever it names).
PART_CLASSES = {"unet": "UNet3DConditionModel", "vae": "AutoencoderKL",
                "text_encoder": "CLIPTextModel"}

# Calibration of ``estimate_peak_bytes`` (see there), measured on the embedded model on a
# CPU (fp32, 3 steps, alignment on): the peak resident memory over the loaded model grew by
# 31 MB per frame x sample (0.4 GB for 10 x 1, 1.3 GB for 10 x 4, 2.5 GB for 20 x 4), which
# is 59 values per latent value x base channel of the joint (guided) batch.
ACTIVATION_FACTOR = 64  # live UNet activation values per latent value x base channel
DECODE_FACTOR = 6  # live VAE decoder values per output pixel x its base channels
OUTPUT_BYTES_PER_PIXEL = 8  # post-processing and writing: a float copy and a few 8-bit ones
VAE_CHUNK = 16  # frames the pipeline decodes at once (``FlipSketchPipeline.decode``)


@dataclass(frozen=True)
class ModelFootprint:
    """The sizes of a model that decide its memory, read from its files.

    ``unet_params`` and ``text_params`` run in the model's dtype, ``vae_params`` in fp32
    (the backbone keeps the VAE there). ``frame_positions`` is the longest clip the UNet has
    frame positions for (``models.frame_positions``), None for a UNet without them.
    """

    unet_params: int
    text_params: int
    vae_params: int
    unet_channels: int  # block_out_channels[0]: the width at the latent's full resolution
    vae_channels: int  # the VAE's block_out_channels[0], its width at full pixel resolution
    latent_size: int
    latent_channels: int
    resolution: int  # pixels the model samples at (latent size x VAE down-sampling)
    frame_positions: int | None


def read_footprint(parts: Mapping[str, Path], model: str) -> ModelFootprint:
    """The footprint of a model whose parts are the folders ``parts`` (``store.locate``);
    raises a one-line ``ModelLoadError`` for a part that is not what it should be."""
    check_parts(parts, model)
    unet, vae = _config(parts["unet"], model), _config(parts["vae"], model)
    factor = 2 ** (len(vae.get("block_out_channels", [0])) - 1)
    return ModelFootprint(
        unet_params=weights_params(parts["unet"], model),
        text_params=weights_params(parts["text_encoder"], model),
        vae_params=weights_params(parts["vae"], model),
        unet_channels=int(unet.get("block_out_channels", [320])[0]),
        vae_channels=int(vae.get("block_out_channels", [128])[0]),
        latent_size=int(unet.get("sample_size", 32)),
        latent_channels=int(unet.get("in_channels", 4)),
        resolution=int(unet.get("sample_size", 32)) * factor,
        # frame_positions.CONFIG_KEY; that module imports torch, this one must not
        frame_positions=unet.get("frame_positions") or None,
    )


def check_parts(parts: Mapping[str, Path], model: str) -> None:
    """Refuse, before any loader runs, a part whose config names another class or whose
    safetensors file is cut short; loaders would fail with a traceback or, worse, build the
    wrong module from defaults."""
    for part, expected in PART_CLASSES.items():
        if part not in parts:
            continue
        config = _config(parts[part], model)
        named = config.get("_class_name") or (config.get("architectures") or [None])[0]
        if named is not None and named != expected:
            raise ModelLoadError(
                f"{part}/config.json of model '{model}' describes a {named}, not the "
                f"{expected} a text-to-video model has there; fix the file or pass --model "
                "a diffusers text-to-video folder")
        weights_params(parts[part], model)  # reads the headers: finds a truncated file


def weights_params(folder: Path, model: str) -> int:
    """Parameters in the weights of one part's folder, from the safetensors headers (pickled
    ``.bin`` weights: their file size, at 4 bytes a parameter). 0 when there are none."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return sum(path.stat().st_size for path in folder.glob("*.bin")) // 4
    total = 0
    for path in files:
        for name, entry in _safetensors_header(path, model).items():
            if name != "__metadata__":
                total += math.prod(entry.get("shape", []))
    return total


def _safetensors_header(path: Path, model: str) -> dict:
    """The JSON header of a safetensors file, after checking the file holds every byte the
    header promises (an interrupted download or copy leaves a file cut short)."""
    fix = f"download or copy it again (`flipsketch models download {model}` for a hub model)"
    size = path.stat().st_size
    try:
        with open(path, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            if length > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(file.read(length))
        end = max((entry["data_offsets"][1] for name, entry in header.items()
                   if name != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError):
        raise ModelLoadError(f"weights file '{path}' is not valid safetensors (damaged or "
                             f"not a weights file); {fix}") from None
    if 8 + length + end > size:
        raise ModelLoadError(f"weights file '{path}' is truncated ({size:,} of "
                             f"{8 + length + end:,} bytes); {fix}")
    return header


def _config(folder: Path, model: str) -> dict:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}  # the tokenizer and scheduler have none; a missing one is store's to name
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"'{path}' of model '{model}' cannot be read ({exc}); fix it or "
                             "download the model again") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"'{path}' of model '{model}' is not a JSON object; fix it or "
                             "download the model again")
    return config


def estimate_peak_bytes(footprint: ModelFootprint, *, frames: int, samples: int, size: int,
                        guidance: bool = True, dtype_bytes: int = 4) -> int:
    """Rough peak memory in bytes of sampling ``samples`` clips of ``frames`` frames, written
    at ``size`` pixels, on one device::

        weights  = (unet_params + text_params) x dtype_bytes + vae_params x 4
        sampling = ACTIVATION_FACTOR x unet_channels x latent_size^2 x latent_channels
                   x frames x batch x dtype_bytes,   batch = samples x (2 with guidance)
        decoding = DECODE_FACTOR x vae_channels x resolution^2 x min(16, frames x samples) x 4
        output   = OUTPUT_BYTES_PER_PIXEL x size^2 x frames x samples
        peak     = weights + max(sampling, decoding) + output

    The UNet's activations grow with everything it sees at once: every latent value of every
    frame of the joint batch (classifier-free guidance doubles it), times its width at full
    latent resolution, where most of them live. The VAE decodes 16 frames at a time in fp32,
    and the frames are post-processed at the output size. Sampling and decoding never
    overlap; the output frames come after both, but are counted on top to stay on the safe
    side. ``ACTIVATION_FACTOR`` also covers the frame alignment's gradients.
    """
    batch = samples * (2 if guidance else 1)
    weights = (footprint.unet_params + footprint.text_params) * dtype_bytes \
        + footprint.vae_params * 4
    latent_values = footprint.latent_size ** 2 * footprint.latent_channels * frames * batch
    sampling = ACTIVATION_FACTOR * footprint.unet_channels * latent_values * dtype_bytes
    decoding = DECODE_FACTOR * footprint.vae_channels * footprint.resolution ** 2 \
        * min(VAE_CHUNK, frames * samples) * 4
    output = OUTPUT_BYTES_PER_PIXEL * size ** 2 * frames * samples
    return int(weights + max(sampling, decoding) + output)


def available_bytes(device: str) -> int | None:
    """Memory free for a new job on ``device`` ("cpu", "cuda", "cuda:1", "mps"), None where it
    cannot be told: CUDA's free memory as the driver reports it, on the CPU the kernel's
    ``MemAvailable`` (what can be allocated without swapping)."""
    kind = device.split(":")[0]
    if kind == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    if kind == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:  # other Unixes: all free pages, a lower bound of what could be freed
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None  # mps shares memory with the system and reports no free figure
