"""The clip dataset format that training reads, on disk and on the fly.

On disk a dataset is one folder holding clips at its top level:

- ``name.gif``, ``name.mp4``, ``name.webp`` or ``name.apng`` files, or
- ``name/`` sub-folders of PNG frames (taken in natural order: 2.png before 10.png),

and a caption for each, from ``captions.jsonl`` (one ``{"file": "name.gif", "caption": "..."}``
per line) or from ``name.txt`` beside the clip (for a frame folder, ``name.txt`` beside the
folder). Where both exist, ``captions.jsonl`` wins. Hidden entries (starting with ".") are
ignored, as is any other file.

Every clip is read once when the dataset is opened, so a bad file stops training before it
starts, with the file and the problem named, rather than hours in.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageSequence

from flipsketch.errors import UsageError
from flipsketch.frames.images import images_to_array, to_grey_square
from flipsketch.training.synth import SketchAnimator

CLIP_SUFFIXES = (".gif", ".mp4", ".webp", ".apng")
CAPTIONS = "captions.jsonl"
_KINDS = "GIF/MP4/WebP/APNG files or folders of PNG frames"


class _Unreadable(Exception):
    """A clip that cannot be decoded; the message is one line saying why."""


def read_frames(path: Path) -> list[Image.Image]:
    """All frames of one clip, decoded now, as PIL images of whatever mode the file has."""
    try:
        if path.is_dir():
            pngs = sorted(path.glob("*.png"), key=_natural)
            return [_decoded(png.read_bytes()) for png in pngs]
        if path.suffix.lower() == ".mp4":
            import imageio.v3 as iio

            video = iio.imread(path, plugin="FFMPEG", index=None)  # (F, H, W, 3) uint8
            return [Image.fromarray(frame) for frame in video]
        image = _decoded(path.read_bytes())
        return [frame.copy() for frame in ImageSequence.Iterator(image)]
    except _Unreadable:
        raise
    except Exception as exc:  # decoders raise many kinds (OSError, SyntaxError, ffmpeg errors)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _Unreadable(f"cannot be read ({reason})") from exc


def _decoded(data: bytes) -> Image.Image:
    if not data:
        raise _Unreadable("is empty (0 bytes)")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _natural(path: Path) -> list:
    """Sort key that puts frame 2 before frame 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def pick_frames(count: int, num_frames: int) -> list[int]:
    """Indices of ``num_frames`` frames out of ``count``: evenly spread from the first to the
    last frame, or every frame then the last one repeated when the clip is too short."""
    if count >= num_frames:
        return np.linspace(0, count - 1, num_frames).round().astype(int).tolist()
    return list(range(count)) + [count - 1] * (num_frames - count)


class ClipFolder(torch.utils.data.Dataset):
    """A folder of captioned clips; items are ``dict(frames=(F, H, W) float in [0, 1],
    caption=str)`` with 1 = white, frames grey, composited on white and padded to square."""

    def __init__(self, root: Path, num_frames: int, size: int, min_frames: int = 2):
        root = Path(root)
        if not root.is_dir():
            raise UsageError(f"dataset folder {root} does not exist; pass a folder of clips")
        if num_frames < 1 or size < 1 or min_frames < 1:
            raise UsageError(
                f"num_frames, size and min_frames must be positive, got {num_frames}, {size}, "
                f"{min_frames}; pass positive numbers"
            )
        self.root, self.num_frames, self.size = root, num_frames, size

        clips = sorted(
            p for p in root.iterdir()
            if not p.name.startswith(".")
            and (p.is_dir() or (p.is_file() and p.suffix.lower() in CLIP_SUFFIXES))
        )
        if not clips:
            raise UsageError(
                f"no clips in {root}; add {_KINDS}, with captions in {CAPTIONS} or .txt files"
            )
        problems: list[str] = []
        listed = self._read_captions_file(set(clips), problems)
        self.items: list[tuple[Path, str]] = []
        for path in clips:
            caption = listed.get(path) or self._caption_beside(path)
            if not caption:
                problems.append(
                    f"{path}: no caption; add it to {root / CAPTIONS} or write "
                    f"{self._txt(path).name} beside it"
                )
            try:
                count = len(read_frames(path))
            except _Unreadable as exc:
                problems.append(f"{path}: {exc}; re-export it or remove it")
                continue
            if count < min_frames:
                problems.append(
                    f"{path}: has {count} frame(s), needs at least {min_frames}; "
                    "remove it or lower min_frames"
                )
            elif caption:
                self.items.append((path, caption))
        if problems:
            more = f" (1 of {len(problems)} problems in {root})" if len(problems) > 1 else ""
            raise UsageError(problems[0] + more)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        path, caption = self.items[index]
        try:
            frames = read_frames(path)
        except _Unreadable as exc:  # changed on disk since the dataset was opened
            raise UsageError(f"{path}: {exc}; re-export it or remove it") from exc
        picked = [to_grey_square(frames[i], self.size) for i in pick_frames(len(frames),
                                                                             self.num_frames)]
        return {"frames": torch.from_numpy(images_to_array(picked)), "caption": caption}

    def _read_captions_file(self, clips: set[Path], problems: list[str]) -> dict[Path, str]:
        """``captions.jsonl`` as {clip path: caption}; bad lines go to ``problems``."""
        listing = self.root / CAPTIONS
        if not listing.is_file():
            return {}
        captions = {}
        for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{listing}:{number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = None
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("file"), str)
                and isinstance(entry.get("caption"), str)
            ):
                problems.append(
                    f'{where}: not a JSON line {{"file": ..., "caption": ...}}; fix or remove it'
                )
                continue
            path = self.root / entry["file"]
            if not path.exists():
                problems.append(
                    f"{where}: names {entry['file']!r}, which is not in {self.root}; "
                    "add the clip or remove the line"
                )
            elif path not in clips:
                problems.append(
                    f"{where}: names {entry['file']!r}, which is not a clip ({_KINDS} at the top "
                    "of the folder); fix the line"
                )
            else:
                captions[path] = entry["caption"].strip()
        return captions

    @staticmethod
    def _txt(path: Path) -> Path:
        return path.with_name((path.name if path.is_dir() else path.stem) + ".txt")

    def _caption_beside(self, path: Path) -> str:
        txt = self._txt(path)
        return txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""


class AnimatorClips(torch.utils.data.Dataset):
    """``SketchAnimator`` clips as a map-style dataset of ``size`` items (item i = clip i).

    Map-style so that the loop can address clips by position:
    exact resume, sharding across processes and latent caching all need item i to be fixed.
    """

    def __init__(self, size: int, num_frames: int, resolution: int, seed: int = 0,
                 **animator: Any):
        """``animator``: ``SketchAnimator``'s data settings (motion_weights, shares, travel,
        paired)."""
        self.animator = SketchAnimator(size=resolution, num_frames=num_frames, seed=seed,
                                       **animator)
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        clip = self.animator.clip(index)
        return {"frames": torch.from_numpy(clip.frames), "caption": clip.caption}
