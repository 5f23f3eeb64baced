"""Synthetic datasets on disk (``flipsketch synth``): clips as GIF, MP4, WebP or PNG folders
with their captions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from flipsketch.errors import UsageError
from flipsketch.files import check_writable_folder, remove, replace_atomically, staging_folder
from flipsketch.frames.images import array_to_images
from flipsketch.frames.writers import write_gif, write_mp4, write_png_frames, write_webp
from flipsketch.training.synth.clips import SketchAnimator

# Clip format -> the shared encoder that writes it ("png" is a folder of frame PNGs).
ENCODERS = {"gif": write_gif, "mp4": write_mp4, "webp": write_webp, "png": write_png_frames}
FORMATS = tuple(ENCODERS)
_OURS = re.compile(r"clip_\d+(\.(gif|mp4|webp))?")  # names write_dataset may replace with force
FPS = 10


def write_dataset(
    out_dir: Path,
    num_clips: int,
    seed: int,
    size: int = 128,
    num_frames: int = 10,
    fmt: str = "gif",
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``num_clips`` training clips and ``captions.jsonl`` into ``out_dir``; return it.

    Clips are ``clip_00000.gif`` (or .mp4, .webp, or a folder of PNG frames for "png"). The
    dataset is built in a hidden folder inside ``out_dir`` and moved in only when complete, so
    a failure or Ctrl-C leaves ``out_dir`` as it was. A non-empty ``out_dir`` is refused
    unless ``force``; then only earlier clips and captions are replaced, other files stay.
    ``progress(n)`` is called after each clip with the number written so far.
    """
    out_dir = Path(out_dir)
    if fmt not in FORMATS:
        raise UsageError(f"unknown clip format {fmt!r}; use one of {', '.join(FORMATS)}")
    if num_clips < 1:
        raise UsageError(f"number of clips must be at least 1, got {num_clips}; pass --clips N")
    if num_frames < 2:
        raise UsageError(f"clips need at least 2 frames, got {num_frames}; pass --frames 2 or more")
    check_writable_folder(out_dir, force, what="output folder",
                          force_fix="--force to replace its clips")
    animator = SketchAnimator(size=size, num_frames=num_frames, seed=seed)

    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with staging_folder(out_dir) as staging:
            lines = []
            for index in range(num_clips):
                clip = animator.clip(index)
                name = f"clip_{index:05d}" + ("" if fmt == "png" else f".{fmt}")
                ENCODERS[fmt](array_to_images(clip.frames), staging / name, FPS)
                lines.append(json.dumps({"file": name, "caption": clip.caption}))
                if progress is not None:
                    progress(index + 1)
            (staging / "captions.jsonl").write_text("\n".join(lines) + "\n")
            # Earlier clips go, also those this run does not replace (a larger earlier
            # dataset's clip_00042.gif must not linger uncaptioned); the user's other files
            # stay.
            for old in out_dir.iterdir():
                if _OURS.fullmatch(old.name) or old.name == "captions.jsonl":
                    remove(old)
            for new in sorted(staging.iterdir()):
                replace_atomically(new, out_dir / new.name)
    finally:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
    return out_dir
