"""A flipsketch writer that saves an animation as one sprite-sheet PNG.

Game engines and CSS animations play a clip by slicing a single image, and a sheet shows the
whole motion at a glance. The layout is written into the PNG itself (text chunk
``flipsketch:spritesheet``, JSON) so that a loader needs no side file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, PngImagePlugin

from flipsketch.plugins import Register, Writer, hookimpl

LAYOUT_KEY = "flipsketch:spritesheet"
SPACING = 2  # pixels between tiles, so that filtering at a tile's edge cannot bleed over


def write_spritesheet(frames: list[Image.Image], path: Path, fps: float) -> None:
    w, h = frames[0].size
    if any(frame.size != (w, h) for frame in frames):
        raise ValueError("all frames of a sprite sheet must have one size")
    count = len(frames)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)

    # Keep transparency when the frames have it; otherwise tiles sit on white paper.
    transparent = any(f.mode in ("RGBA", "LA", "PA") or f.has_transparency_data for f in frames)
    mode = "RGBA" if transparent else ("L" if all(f.mode == "L" for f in frames) else "RGB")
    sheet = Image.new(mode, (columns * (w + SPACING) - SPACING, rows * (h + SPACING) - SPACING),
                      0 if transparent else "white")
    for i, frame in enumerate(frames):
        origin = ((i % columns) * (w + SPACING), (i // columns) * (h + SPACING))
        sheet.paste(frame.convert(mode), origin)

    layout = {"frame_width": w, "frame_height": h, "columns": columns, "rows": rows,
              "count": count, "spacing": SPACING, "fps": fps}
    info = PngImagePlugin.PngInfo()
    info.add_text(LAYOUT_KEY, json.dumps(layout))
    sheet.save(path, format="PNG", pnginfo=info)


@hookimpl
def register_writers(register: Register) -> None:
    register("spritesheet", Writer("spritesheet", (".sheet.png",), write_spritesheet))
