"""Invert a drawing once: the reference noise x_T^r kept on disk between runs.

Inversion is T of the 3T + 10 or so UNet calls of a default run (25 of 85), and its result
depends on neither the prompt nor the seed: only on the model, the drawing, the timesteps and
the inverter. Trying another prompt or seed on the same drawing, which the web page, recipes
and best-of-K do all the time, need not pay for it again.

The key is a fingerprint of everything the inverter sees: the encoded drawing, the null
prompt's embeddings (so the text encoder), the timesteps and scheduler configuration, the
UNet (names, shapes, dtypes and a strided sample of every parameter, which any fine-tune or
LoRA changes), the device type and the inverter's own name. An entry is a few kilobytes of
safetensors; the folder keeps the newest ``MAX_ENTRIES`` and can be deleted at any time. A
cache that cannot be read or written never fails a run: it is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from flipsketch.files import atomic_path, user_cache_dir
from flipsketch.plugins import sketch_encoding

FORMAT = 1  # bump when the stored result's meaning changes, so old entries are not reused
KILLED_WRITE_AGE_S = 3600  # a cache write takes well under a second
MAX_ENTRIES = 2000  # ~16 KB each at ModelScope's 32 x 32 latents
_SAMPLES_PER_TENSOR = 64


def default_folder() -> Path:
    return user_cache_dir() / "inversions"


def _update_with_tensor(digest, tensor: torch.Tensor) -> None:
    digest.update(f"{tuple(tensor.shape)}|{tensor.dtype}|".encode())
    digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def module_fingerprint(module: torch.nn.Module) -> str:
    """A digest of a module's weights that is cheap even for a 1.4 B-parameter UNet.

    Hashing every weight would cost seconds; a strided sample of each tensor (plus every
    name, shape and dtype) changes with any fine-tune, LoRA or merged adapter, whose updates
    touch every entry of the tensors they change.
    """
    digest = hashlib.sha256()
    samples = []
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        flat = tensor.detach().reshape(-1)
        stride = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
        samples.append(flat[::stride][:_SAMPLES_PER_TENSOR].float())
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype};".encode())
    for name, sub in module.named_modules():  # peft keeps adapter scales outside the weights
        scaling = getattr(sub, "scaling", None)
        if isinstance(scaling, dict) and scaling:
            digest.update(f"{name}:{sorted(scaling.items())};".encode())
    if samples:
        _update_with_tensor(digest, torch.cat(samples))  # one device-to-host copy
    return digest.hexdigest()


class CachedInverter:
    """Any inverter (``flipsketch.plugins.Inverter``) with its results kept in ``folder``.

    ``hit`` says whether the last call was answered from the cache, for reports.
    """

    def __init__(self, inverter: Callable, name: str, folder: Path | None = None) -> None:
        self.inverter, self.name = inverter, name
        self.folder = folder if folder is not None else default_folder()
        self.hit: bool | None = None
        # The drawing is encoded as the wrapped inverter asks (copies, VAE range, sampling);
        # the key sees the encoded latent, so each encoding has entries of its own.
        self.encoding = sketch_encoding(inverter)

    def key(self, pipe, latent: torch.Tensor, null_embeds: torch.Tensor,
            timesteps: torch.Tensor) -> str:
        digest = hashlib.sha256(f"flipsketch-inversion/{FORMAT}/{self.name}".encode())
        # Not diffusers' bookkeeping ("_use_default_values" is a list built from a set: its
        # order changes between processes, which made every run a miss).
        config = {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")}
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
        digest.update(f"{pipe.unet.device.type}|{module_fingerprint(pipe.unet)}".encode())
        for tensor in (latent, null_embeds, timesteps):
            _update_with_tensor(digest, tensor)
        return digest.hexdigest()[:40]

    def __call__(self, pipe, latent: torch.Tensor, null_embeds: torch.Tensor,
                 timesteps: torch.Tensor) -> torch.Tensor:
        path = self.folder / f"{self.key(pipe, latent, null_embeds, timesteps)}.safetensors"
        cached = self._read(path)
        self.hit = cached is not None
        if cached is not None:
            return cached.to(latent.device)
        noise = self.inverter(pipe, latent, null_embeds, timesteps)
        self._write(path, noise)
        return noise

    def _read(self, path: Path) -> torch.Tensor | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            noise = load_file(path)["noise"]
        except (OSError, KeyError, SafetensorError):  # absent, unreadable or damaged
            return None
        with contextlib.suppress(OSError):  # a read-only or shared cache is still a hit
            path.touch()  # recently used: kept when the folder is trimmed
        return noise

    def _write(self, path: Path, noise: torch.Tensor) -> None:
        from safetensors.torch import save_file

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, force=True) as temporary:  # replaces a damaged entry
                save_file({"noise": noise.detach().to("cpu").contiguous()}, str(temporary))
            self._trim()
        except OSError:
            pass  # a read-only or full cache folder costs the next run time, nothing else

    def _trim(self) -> None:
        entries = sorted((p for p in self.folder.glob("*.safetensors")
                          if not p.name.startswith(".")),  # not another run's temporary
                         key=lambda p: p.stat().st_mtime)
        for stale in entries[:-MAX_ENTRIES]:
            stale.unlink(missing_ok=True)
        # A run killed while writing leaves its temporary; others share the folder, so only
        # one older than any write could take goes.
        for left in self.folder.glob(".*.tmp*"):
            with contextlib.suppress(OSError):
                if time.time() - left.stat().st_mtime > KILLED_WRITE_AGE_S:
                    left.unlink()
