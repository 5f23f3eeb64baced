"""The latent cache of a training run, kept on disk so a resumed run does not encode again.

With ``LoopConfig.cache_latents`` the loop encodes each clip of its pool once and serves it
from memory afterwards. In memory only, every ``--resume`` (a CPU run stopped and started
whenever the machine is free) paid the whole first pass again: 4,000 clips of tiny.yaml's pool
through the VAE before the run was back to cached speed. ``LatentStore`` writes the entries
made since the last write beside each checkpoint and reads them all back when a run starts.

An entry is trusted only for the same VAE and the same frames: the store's folder is named by
a fingerprint of the VAE's weights and config, and each entry keeps a hash of the frames it
was encoded from, checked against the clip the dataset draws now (about 1 ms a clip). So a
resumed run whose data settings changed (``--set`` of a motion weight, say) re-encodes what
changed, and uses the rest.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from flipsketch.files import atomic_path


def frames_hash(frames: torch.Tensor) -> int:
    """A 63-bit hash of a clip's frames (their exact float32 values)."""
    data = np.ascontiguousarray(frames.detach().cpu().numpy(), dtype=np.float32).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def vae_fingerprint(vae) -> str:
    """16 hex digits naming the VAE's config and weights: latents from another VAE differ."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


class LatentStore:
    """``{index: float16 latents}`` of one process, with the frames hash of each entry, kept
    in ``folder/<vae fingerprint>/`` as one safetensors file per write."""

    def __init__(self, folder: Path, vae, rank: int = 0):
        self.root, self.vae, self.rank = Path(folder), vae, rank
        self.latents: dict[int, torch.Tensor] = {}
        self.hashes: dict[int, int] = {}
        self._unsaved: set[int] = set()
        self._unchecked: set[int] = set()  # read from disk, frames not compared yet

    @cached_property
    def folder(self) -> Path:
        """Where this VAE's entries live (hashing the VAE only when the disk is used)."""
        return self.root / vae_fingerprint(self.vae)

    def load(self) -> int:
        """Read every entry written before (any process's); returns how many."""
        for path in sorted(self.folder.glob("rank*.safetensors")):  # not a .tmp being written
            tensors = load_file(path)
            for key, value in tensors.items():
                kind, index = key.split(".")
                if kind == "z":
                    self.latents[int(index)] = value
                    self.hashes[int(index)] = int(tensors[f"h.{index}"])
        self._unchecked = set(self.latents)
        return len(self.latents)

    def get(self, index: int, frames: torch.Tensor | None) -> torch.Tensor | None:
        """The latents of item ``index``, or None when absent or made from other frames."""
        if index not in self.latents:
            return None
        if index in self._unchecked:
            if frames is None or frames_hash(frames) != self.hashes[index]:
                del self.latents[index], self.hashes[index]
                self._unchecked.discard(index)
                return None
            self._unchecked.discard(index)
        return self.latents[index]

    def put(self, index: int, latents: torch.Tensor, frames: torch.Tensor) -> None:
        self.latents[index] = latents.to("cpu", torch.float16)
        self.hashes[index] = frames_hash(frames)
        self._unsaved.add(index)

    def save(self, step: int) -> None:
        """Write the entries made since the last save (nothing when there are none)."""
        if not self._unsaved:
            return
        tensors = {}
        for index in sorted(self._unsaved):
            tensors[f"z.{index}"] = self.latents[index].contiguous()
            tensors[f"h.{index}"] = torch.tensor(self.hashes[index], dtype=torch.int64)
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"rank{self.rank}-step{step:07d}.safetensors"
        with atomic_path(target, force=True) as tmp:
            save_file(tensors, tmp)
        self._unsaved.clear()
