"""The step cache: each step's result kept in OUTDIR under a hash of all it depends on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from flipsketch import __version__
from flipsketch.errors import UsageError
from flipsketch.files import atomic_path, write_text_atomic
from flipsketch.models.presets import resolve_model
from flipsketch.recipes.schema import CACHE_DIR, Clip, Recipe, Step


# -- the cache ---------------------------------------------------------------------------------
def step_keys(recipe: Recipe) -> dict[str, str]:
    """Each step's cache key: a hash of all it depends on, its inputs' keys included, so that
    a change anywhere reaches every step downstream of it."""
    keys: dict[str, str] = {}
    model = model_fingerprint(recipe.model)
    for step in recipe.steps:
        params = {}
        for key, spec in step.step_type.fields.items():
            value = step.params.get(key)
            if spec.kind == "file" and value is not None:
                value = fingerprint(Path(value))
            elif spec.kind == "model" and value is not None:
                value = model_fingerprint(value)
            params[key] = value
        material = {
            "flipsketch": __version__, "type": step.type, "params": params,
            "options": step.options, "inputs": [keys[name] for name in step.inputs],
            "model": model if step.step_type.sampler else None,
            "device": [recipe.device, recipe.dtype], "outputs": step.outputs,
        }
        blob = json.dumps(material, sort_keys=True, default=str).encode()
        keys[step.name] = hashlib.sha256(blob).hexdigest()
    return keys


def fingerprint(path: Path) -> str | None:
    """Content hash of a file, or of a folder's files and their names; None if missing."""
    digest = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{fingerprint(file)}\0".encode())
    else:
        return None
    return digest.hexdigest()


def model_fingerprint(model: str) -> str:
    """A local model folder (a preset's too) by its files' names, sizes and times (hashing
    gigabytes of weights on every run would cost more than it saves); a hub id by its name."""
    try:
        folder = Path(resolve_model(model).source)
    except UsageError:  # a video model id: the backbone does not know it
        folder = Path(model)
    if not folder.is_dir():
        return model
    listing = sorted((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps([model, listing]).encode()).hexdigest()


class StepCache:
    """``OUTDIR/.flipsketch``: each step's frames (``NAME.npz``) and ``manifest.json``, which
    holds each step's key and a content hash of every file the recipe wrote, so a re-run can
    tell its own earlier outputs (replaced freely) from the user's files (kept unless --force).
    """

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.dir = outdir / CACHE_DIR
        self.manifest: dict[str, Any] = {"version": 1, "steps": {}}
        try:
            loaded = json.loads((self.dir / "manifest.json").read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and isinstance(loaded.get("steps"), dict):
                self.manifest = loaded
        except (OSError, ValueError):
            pass  # no cache yet, or a damaged one: everything runs again

    def valid(self, step: Step, key: str) -> bool:
        """Whether ``step`` ran before with this key and its results are all still there."""
        entry = self.manifest["steps"].get(step.name)
        if not entry or entry.get("key") != key:
            return False
        if step.clips and not (self.dir / f"{step.name}.npz").is_file():
            return False
        files = entry.get("files", {})
        return all(out in files and fingerprint(self.outdir / out) == files[out]
                   for out in step.outputs)

    def owns(self, out: str) -> bool:
        """Whether the file at ``out`` is exactly as a previous run of a recipe wrote it."""
        current = fingerprint(self.outdir / out)
        return any(entry.get("files", {}).get(out) == current
                   for entry in self.manifest["steps"].values())

    def load(self, name: str) -> list[Clip]:
        fps = self.manifest["steps"][name]["fps"]
        with np.load(self.dir / f"{name}.npz") as data:
            return [Clip(data[f"clip{i}"], rate) for i, rate in enumerate(fps)]

    def store(self, step: Step, key: str, clips: list[Clip] | None) -> None:
        """Record a finished step; each file appears atomically, so an interrupted store
        leaves the previous state."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if clips:
            arrays = {f"clip{i}": np.asarray(c.frames, np.float32) for i, c in enumerate(clips)}
            with atomic_path(self.dir / f"{step.name}.npz", force=True) as tmp:
                np.savez_compressed(tmp, **arrays)  # tmp ends in .npz: numpy adds none
        self.manifest["steps"][step.name] = {
            "key": key, "type": step.type, "fps": [c.fps for c in clips or []],
            "frames": [len(c.frames) for c in clips or []],
            "files": {out: fingerprint(self.outdir / out) for out in step.outputs},
        }
        write_text_atomic(self.dir / "manifest.json", json.dumps(self.manifest, indent=1),
                          force=True)
