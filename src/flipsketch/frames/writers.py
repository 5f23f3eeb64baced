"""Output writers and the one saving routine every command shares.

A writer only knows how to encode frames into a path. Everything about *where* is decided
here, once: the output name's suffix picks the writer (the longest claimed suffix wins, so a
plugin's ".sheet.png" beats the built-in ".png"), an existing output is kept unless the user
forces, the folder is checked before minutes of sampling are spent, and the result appears
atomically (``flipsketch.files``): a hidden temporary sibling is written and then renamed into
place, so a crash or Ctrl-C never leaves a half-written animation behind or destroys the
previous one.
"""

from __future__ import annotations

import errno
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from flipsketch.errors import FlipSketchError, UsageError
from flipsketch.files import atomic_path, check_writable
from flipsketch.plugins import DEFAULT_FPS, PluginManager, Registry, Writer, get_manager

FOLDER_WRITER = "png-frames"
# What a frames folder holds, whichever folder writer made it (frame_000.png, .svg ...).
_FRAME_NAME = re.compile(r"frame_\d+\.[a-z0-9]+")


# -- built-in encoders -------------------------------------------------------------------------
def _duration_ms(fps: float) -> int:
    return max(1, round(1000.0 / fps))


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or img.has_transparency_data


def on_white(img: Image.Image) -> Image.Image:
    """RGB with any transparency composited over white paper (public: the SVG plugin traces
    what this shows)."""
    if not _has_alpha(img):
        return img.convert("RGB")
    rgba = img.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(paper, rgba).convert("RGB")


def _gif_frame(img: Image.Image) -> Image.Image:
    """One frame in a form GIF stores without surprises.

    Grey frames stay "L" (GIF's grey palette, no quantisation at all). Frames with alpha are
    flattened on white and quantised to 255 colours without dithering, and the 256th palette
    entry marks pixels under 50 % opacity as transparent, since GIF has no partial alpha.
    """
    if not _has_alpha(img):
        return img if img.mode in ("L", "P", "1") else img.convert("RGB")
    opaque = np.asarray(img.convert("RGBA").getchannel("A")) >= 128  # (h, w)
    indexed = on_white(img).convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    pixels = np.where(opaque, np.asarray(indexed), 255).astype(np.uint8)
    frame = Image.fromarray(pixels, mode="P")
    frame.putpalette(indexed.getpalette())
    frame.info["transparency"] = 255
    return frame


def write_gif(frames: list[Image.Image], path: Path, fps: float) -> None:
    # disposal 2 clears each frame before the next, so transparent frames do not pile up.
    first, *rest = [_gif_frame(f) for f in frames]
    first.save(path, format="GIF", save_all=True, append_images=rest, loop=0,
               duration=_duration_ms(fps), disposal=2)


def write_webp(frames: list[Image.Image], path: Path, fps: float) -> None:
    first, *rest = frames
    first.save(path, format="WEBP", save_all=True, append_images=rest, loop=0,
               duration=_duration_ms(fps), lossless=True, exact=True)


def write_apng(frames: list[Image.Image], path: Path, fps: float) -> None:
    first, *rest = frames
    first.save(path, format="PNG", save_all=True, append_images=rest, loop=0,
               duration=_duration_ms(fps))


def write_mp4(frames: list[Image.Image], path: Path, fps: float) -> None:
    """H.264 in yuv420p, which every player decodes; that format needs even width and height,
    so odd sizes get one white row or column rather than a resampled picture."""
    import imageio_ffmpeg  # its ffmpeg binary is needed only here, not to train or draw GIFs

    w, h = frames[0].size
    even_w, even_h = w + w % 2, h + h % 2
    encoder = imageio_ffmpeg.write_frames(
        str(path), (even_w, even_h), fps=fps, codec="libx264", pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p", quality=8, macro_block_size=1, ffmpeg_log_level="error",
        output_params=["-f", "mp4"],
    )
    encoder.send(None)  # start ffmpeg
    try:
        for frame in frames:
            canvas = Image.new("RGB", (even_w, even_h), (255, 255, 255))
            canvas.paste(on_white(frame), (0, 0))
            encoder.send(np.ascontiguousarray(np.asarray(canvas)))  # (H, W, 3) uint8
    finally:
        encoder.close()


def write_png_frames(frames: list[Image.Image], path: Path, fps: float) -> None:
    """A folder of frame_000.png ... for editors and compositing tools."""
    path.mkdir()
    digits = max(3, len(str(len(frames) - 1)))
    for i, frame in enumerate(frames):
        frame.save(path / f"frame_{i:0{digits}d}.png", format="PNG")


def write_contact_sheet(frames: list[Image.Image], path: Path, fps: float) -> None:
    """Every frame of a clip in one PNG, left to right, each labelled with its number and time,
    so that a result can be judged at a glance. Writer ``contact-sheet``, for names ending in
    ``.contact.png`` (``.sheet.png`` is the spritesheet plugin's: exact tiles for game engines,
    where this one is for people)."""
    columns = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / columns)
    cell = min(256, max(f.width for f in frames))
    font = ImageFont.load_default(size=max(10, cell // 12))
    label, pad = max(14, cell // 8), max(4, cell // 32)
    sheet = Image.new("RGB", (pad + columns * (cell + pad), pad + rows * (cell + label + pad)),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, frame in enumerate(frames):
        x = pad + (i % columns) * (cell + pad)
        y = pad + (i // columns) * (cell + label + pad)
        rgba = frame.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        thumb = Image.alpha_composite(paper, rgba).convert("RGB")
        thumb.thumbnail((cell, cell), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x, y))
        draw.rectangle((x - 1, y - 1, x + thumb.width, y + thumb.height), outline=(180,) * 3)
        draw.text((x, y + cell + 2), f"{i}  ({i / fps:.2f} s)", fill=(0, 0, 0), font=font)
    sheet.save(path, format="PNG")


# -- choosing and checking the output ------------------------------------------------------
def check_output_path(path: str | Path, force: bool = False,
                      manager: PluginManager | None = None, *,
                      writer: str | None = None) -> Writer:
    """The writer for ``path``, after every check that can fail without writing anything.

    Called by ``save_frames`` and, earlier, by commands that are about to spend minutes
    sampling, so that a typo in the output name costs nothing.
    """
    path = Path(path)
    registry = (manager or get_manager()).registry("writer")
    if writer is not None:
        chosen = registry.get(writer)
    elif not path.suffix:
        chosen = registry.get(FOLDER_WRITER)
    else:
        chosen = _writer_for_suffix(path, registry)
        if path.is_dir() and not chosen.folder:  # an existing folder: frames go into it
            chosen = registry.get(FOLDER_WRITER)

    check_writable(path, force, what="output path", replaceable=_is_frames_folder)
    return chosen


def _writer_for_suffix(path: Path, registry: Registry) -> Writer:
    """The writer claiming the longest suffix of the name; the first registered wins ties."""
    suffix = claimed_suffix(path.name, registry)
    if suffix is None:
        known = sorted({s for impl in registry.impls.values() for s in impl.suffixes})
        raise UsageError(f"unknown output type '{path.suffix}' for '{path.name}'; use one of "
                         f"{', '.join(known)}, or a name without suffix for a folder of frames"
                         f"{registry.broken_hint()}")
    return next(impl for impl in registry.impls.values()
                if suffix.lower() in (s.lower() for s in impl.suffixes))


def claimed_suffix(name: str, registry: Registry) -> str | None:
    """The longest suffix of ``name`` a writer claims; "" for a folder name; None if none."""
    if not Path(name).suffix:
        return ""
    claimed = [s for impl in registry.impls.values() for s in impl.suffixes
               if name.lower().endswith(s.lower())]
    return max(claimed, key=len) if claimed else None


def numbered_paths(path: str | Path, count: int, manager: PluginManager | None = None, *,
                   numbered: bool = False) -> list[Path]:
    """``cat.gif`` for one output; ``cat-1.gif`` ... ``cat-K.gif`` for K, the number going
    before the suffix the writer claims (``cat-1.sheet.png``, not ``cat.sheet-1.png``; a
    folder ``frames`` -> ``frames-1``).

    ``numbered`` numbers a single output too: ``animate --samples K --keep 1`` writes
    ``cat-1.gif``, the best of K, so the best sample has one name whatever J is.
    """
    path = Path(path)
    if count <= 1 and not numbered:
        return [path]
    registry = (manager or get_manager()).registry("writer")
    suffix = claimed_suffix(path.name, registry) or ""
    stem = path.name[: len(path.name) - len(suffix)]
    return [path.with_name(f"{stem}-{k}{suffix}") for k in range(1, count + 1)]


def _is_frames_folder(path: Path) -> bool:
    """Whether a folder holds only frame PNGs, i.e. is safe to replace with --force.

    --force means "overwrite my previous output", never "delete a folder of my own files".
    """
    return all(entry.is_file() and _FRAME_NAME.fullmatch(entry.name) for entry in path.iterdir())


# -- saving ----------------------------------------------------------------------------------
def save_frames(frames: list[Image.Image], path: str | Path, fps: float = DEFAULT_FPS,
                force: bool = False, writer: str | None = None,
                manager: PluginManager | None = None) -> Path:
    """Write ``frames`` to ``path`` atomically with the writer its name (or ``writer``) picks.

    Returns the path written. On any failure, Ctrl-C included, the temporary output is
    removed and an existing output is left as it was.
    """
    path = Path(path)
    chosen = check_output_path(path, force, manager, writer=writer)
    if not frames:
        raise ValueError("save_frames needs at least one frame")
    if not fps > 0:
        raise UsageError(f"frame rate must be positive, got {fps}; pass an fps such as 10")

    # The temporary name keeps the claimed suffix at its end, for writers that look at it.
    suffix = next((s for s in chosen.suffixes if path.name.lower().endswith(s.lower())),
                  chosen.suffixes[0] if chosen.suffixes else "")
    # Without force, an output that appeared while we were writing is not replaced.
    with atomic_path(path, force=force, suffix=suffix) as tmp:
        try:
            chosen.write(list(frames), tmp, float(fps))
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise  # not the disk: Pillow's format errors are OSErrors too
            raise FlipSketchError(f"cannot write '{path}' ({exc.strerror or exc}); free some "
                                  "disk space or pick another output path") from exc
        if not tmp.exists():
            raise RuntimeError(f"writer '{chosen.name}' wrote nothing to {tmp}")
    return path
