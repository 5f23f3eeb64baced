"""Sketches in, frames out: loading drawings of any kind and converting frame stacks.

A user's drawing can be anything Pillow opens: a transparent PNG from a drawing app, a palette
GIF, a 16-bit scan, a CMYK JPEG from a print workflow, a phone photo with an EXIF rotation.
The model wants one thing: a grey, square image with dark strokes on white paper. Everything
here goes through float32 so that 16-bit and float inputs keep their precision until the last
rounding to 8 bits.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from flipsketch.errors import FlipSketchWarning, UsageError
from flipsketch.frames.examples import listed_examples, resolve_sketch

_FIX = "pass a PNG/JPEG/WebP drawing"

# A pixel is ink when it is darker than the midpoint between paper and ink. A fixed threshold
# rather than Otsu's: Otsu always splits a frame into two classes, so on a blank or washed-out
# frame it declares the paper's grain to be ink, and a vanished drawing would still score. A
# fixed midpoint keeps scores comparable across frames, configurations and models, and on
# binarised output (what users see) any threshold gives the same mask. The evaluation's
# metrics and the svg plugin's tracing both use it.
INK_THRESHOLD = 0.5
# The smallest drawing worth animating: its longer side is upscaled to the model's resolution,
# and under 16 pixels no stroke survives that as a stroke.
MIN_SIDE = 16
# A drawing whose lightest and darkest pixels differ by less than this (on 0..1) has no
# strokes to tell from the paper.
MIN_CONTRAST = 0.1


def load_sketch(path: str | Path) -> Image.Image:
    """Open a drawing and decode it now, so a broken file fails here with a one-line reason.

    ``path`` may also name a drawing shipped with the package, ``example:fish``
    (``frames.examples``).

    The bytes are read into memory first: the image then owns no open file handle (a
    multi-frame format would otherwise keep one), and it keeps its EXIF data for
    ``to_grey_square`` to apply the orientation. The bytes are checked and decoded by
    ``decode_sketch``.
    """
    path = resolve_sketch(path)  # example:NAME is a drawing shipped with the package
    name = f"sketch '{path}'"
    if not path.exists():
        raise UsageError(f"{name} does not exist; check the path, or start from a drawing "
                         f"shipped with flipsketch: {listed_examples()}")
    if path.is_dir():
        raise UsageError(f"{name} is a folder; {_FIX}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"{name} cannot be read ({exc.strerror or exc}); check its permissions"
        ) from None
    return decode_sketch(data, str(path), stacklevel=3)


def decode_sketch(data: bytes, name: str, *, stacklevel: int = 2) -> Image.Image:
    """A drawing's bytes decoded now, or a one-line reason why not (``UsageError``).

    ``name`` is the file's name as the user gave it (a path, or an upload's file name); the
    messages call the drawing ``sketch 'NAME'``, as ``load_sketch`` does for a file. An
    animated image warns (``FlipSketchWarning``) and keeps its first frame.
    """
    path = Path(name)
    name = f"sketch '{name}'"
    if not data:
        raise UsageError(f"{name} is empty (0 bytes); {_FIX}")
    if _looks_like_svg(data):
        raise UsageError(f"{name} is an SVG (vector) drawing, which flipsketch does not "
                         "rasterise; convert it to PNG first, e.g. `rsvg-convert -w 512 "
                         f"{path.name} -o {path.stem}.png`")
    try:
        # Pillow only warns between 1x and 2x its pixel limit and decodes anyway; a drawing
        # that large is a mistake or an attack either way, so both sizes are refused.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        img.load()
    except UnidentifiedImageError:
        raise UsageError(f"{name} is not an image (cannot identify image file); {_FIX}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = (Image.MAX_IMAGE_PIXELS or 0) // 1_000_000
        raise UsageError(f"{name} is too large to open safely (over {limit} million pixels, "
                         "possibly a decompression bomb); scale it down to a few thousand "
                         "pixels a side") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise UsageError(f"{name} is corrupt ({exc}); re-export it as a PNG") from None
    if img.width == 0 or img.height == 0:
        raise UsageError(f"{name} has no pixels ({img.width}x{img.height}); {_FIX}")
    if max(img.size) < MIN_SIDE:
        raise UsageError(f"{name} is only {img.width}x{img.height} pixels; draw it at least "
                         f"{MIN_SIDE} pixels on its longer side")
    frames = getattr(img, "n_frames", 1)
    if frames > 1:  # an animated GIF/WebP/APNG: load() decoded the first frame
        warnings.warn(f"{path.name} has {frames} frames; using the first",
                      FlipSketchWarning, stacklevel=stacklevel)
    return img


def check_drawing(img: Image.Image, name: str) -> None:
    """Refuse a drawing with nothing to animate: a blank page, or one shade all over.

    The sampler keeps what it finds in the drawing; on a blank page that is nothing, and the
    result is text-only generation that cost an inversion — almost always the wrong file.
    Judged on a small grey square, so transparency counts as paper like everywhere else.
    """
    grey = np.asarray(to_grey_square(img, 64), dtype=np.float32) / 255.0  # (64, 64)
    if grey.max() - grey.min() >= MIN_CONTRAST:
        return
    if grey.mean() >= 0.5:
        raise UsageError(f"{name} is blank (all white); draw something, or use "
                         "`flipsketch generate PROMPT` for text alone")
    raise UsageError(f"{name} is a single dark shade (all black?), with no strokes to tell "
                     "from the paper; pass dark strokes on a light background")


# What a line drawing looks like, measured on a 256-px grey square with its paper level scaled
# to white (``line_art_measures``). The five example drawings and 2,600 synthetic doodles
# (``training.synth.SketchAnimator.still``, 32 to 512 px) stay under 12 % mid-grey, 12 % dark
# and 11 % edge pixels; a photograph has 32-61 % mid-grey (a circuit board: 66 % dark), a
# flat-coloured painting 68-83 %. Each limit leaves the drawings a margin of about 1.3x or more.
LINE_ART_SIZE = 256
MAX_MID_GREY = 0.15  # share of pixels between ink and paper: shading, colour fields, photos
MAX_DARK = 0.40  # share of dark pixels: a dark photo or painting, not strokes on paper
# A busy photo (texture everywhere) with less grey than MAX_MID_GREY: both at once.
BUSY_EDGES, BUSY_MID_GREY = 0.15, 0.08
PHOTO_TO_DRAWING = ("trace its outlines in a drawing app, or extract its edges, e.g. `magick "
                    "photo.jpg -canny 0x1+10%+30% -negate drawing.png` (ImageMagick)")


@dataclass(frozen=True)
class LineArtMeasures:
    """How much of an image looks like strokes on paper, each a share of its pixels."""

    mid_grey: float  # between ink and paper (0.25 to 0.75 of the paper's level)
    dark: float  # darker than half the paper's level
    edges: float  # where the level changes by over 0.1 from one pixel to the next

    def problem(self) -> str | None:
        """Why this is not a line drawing, in a few words; None for a line drawing."""
        if self.mid_grey > MAX_MID_GREY:
            return (f"{self.mid_grey:.0%} of its pixels are mid-grey, where a line drawing "
                    f"has under {MAX_MID_GREY:.0%}")
        if self.dark > MAX_DARK:
            return (f"{self.dark:.0%} of its pixels are dark, where a line drawing is mostly "
                    f"white paper")
        if self.edges > BUSY_EDGES and self.mid_grey > BUSY_MID_GREY:
            return (f"texture all over: {self.edges:.0%} of its pixels are edges and "
                    f"{self.mid_grey:.0%} mid-grey")
        return None


def line_art_measures(img: Image.Image) -> LineArtMeasures:
    """Mid-grey, dark and edge shares of a drawing as the model sees it (a grey square,
    transparency as paper), at one size so that the shares do not depend on the file's.

    The paper's level (the 95th percentile, at least 0.2) is scaled to white first, so a
    drawing scanned or photographed on grey paper is measured as the drawing it is.
    """
    grey = np.asarray(to_grey_square(img, LINE_ART_SIZE), dtype=np.float32) / 255.0
    paper = max(float(np.percentile(grey, 95)), 0.2)
    level = np.clip(grey / paper, 0.0, 1.0)
    dy, dx = np.gradient(level)
    return LineArtMeasures(mid_grey=float(((level > 0.25) & (level < 0.75)).mean()),
                           dark=float((level < 0.5).mean()),
                           edges=float((np.hypot(dx, dy) > 0.1).mean()))


def warn_unless_line_art(img: Image.Image, name: str) -> LineArtMeasures:
    """One ``FlipSketchWarning`` when ``img`` is not a line drawing (a photograph, a filled
    painting): the method animates strokes on paper, and on anything else it runs for
    minutes and returns abstract lines. A warning, not an error: the run goes on, as the
    user may know better. Returns the measures."""
    measures = line_art_measures(img)
    problem = measures.problem()
    if problem is not None:
        warnings.warn(f"{name} does not look like a line drawing ({problem}); FlipSketch "
                      f"animates line drawings, dark strokes on white: for a photo, "
                      f"{PHOTO_TO_DRAWING}", FlipSketchWarning, stacklevel=2)
    return measures


def _looks_like_svg(data: bytes) -> bool:
    """Whether a file's first bytes are SVG markup (Pillow has no SVG decoder)."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<svg", b"<?xml")) and b"<svg" in head


def to_grey_square(img: Image.Image, size: int) -> Image.Image:
    """Any drawing -> ``size`` x ``size`` mode "L", strokes dark on white, aspect ratio kept.

    Transparent areas become white paper (a drawing app's transparent background is paper,
    and black-on-transparent strokes would otherwise vanish into a black square). The image is
    padded with white to a centred square rather than stretched, so a circle stays a circle.
    """
    if size < 1:
        raise UsageError(f"image size must be at least 1 pixel, got {size}; pass a positive size")
    img = _shrink(ImageOps.exif_transpose(img), size)
    grey, alpha = _grey_and_alpha(img)  # (h, w) each, floats in [0, 1]
    if alpha is not None:
        grey = grey * alpha + (1.0 - alpha)  # composite on white

    h, w = grey.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = np.pad(grey, ((top, side - h - top), (left, side - w - left)), constant_values=1.0)

    resized = Image.fromarray(square.astype(np.float32), mode="F")
    resized = resized.resize((size, size), Image.Resampling.LANCZOS)
    return array_to_images(np.asarray(resized)[None])[0]


def _shrink(img: Image.Image, size: int) -> Image.Image:
    """A drawing many times larger than ``size``, box-averaged down by a whole factor to
    about 4x ``size`` (LANCZOS then does the last step).

    Without it an 8000 px drawing becomes float arrays of 2 GB and takes seconds to resize;
    averaging blocks first loses nothing LANCZOS would keep. Alpha is premultiplied while
    averaging (``RGBa``), so transparent paper's hidden colour does not bleed into strokes.
    16-bit greys are left alone (``reduce`` has no such mode, and scans are not that big).
    """
    factor = max(img.size) // (4 * size)
    if factor < 2 or img.mode.startswith("I;16"):
        return img
    if img.mode in ("1", "P"):
        img = img.convert("RGBA" if img.has_transparency_data else "L")
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        # Pillow premultiplies only from RGBA (and "La" only unpremultiplies to LA).
        img = img.convert("LA") if img.mode == "La" else img
        return img.convert("RGBA").convert("RGBa").reduce(factor).convert("RGBA")
    return img.reduce(factor)


def _grey_and_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(grey, alpha or None) as float32 (h, w) arrays in [0, 1], for any Pillow mode."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(img).astype(np.float32)  # (h, w)
        # "I;16" is a 16-bit image by definition. "I" (32-bit) carries no bit depth: Pillow
        # uses it for 16-bit scans as well as for 8-bit values, so judge by the data.
        full_scale = 65535.0 if mode != "I" or values.max() > 255 else 255.0
        return np.clip(values / full_scale, 0.0, 1.0), None
    if mode == "F":
        values = np.asarray(img).astype(np.float32)
        # Pillow's own float images (``convert("F")``) are on the 0..255 scale; arrays made
        # by hand are usually 0..1.
        full_scale = 1.0 if values.max() <= 1.0 else 255.0
        return np.clip(values / full_scale, 0.0, 1.0), None

    if mode in ("LA", "La", "PA", "RGBa") or img.has_transparency_data:
        # Palette transparency, tRNS colour keys and premultiplied modes all become straight
        # RGBA; "LA" is already straight alpha and keeps its grey channel as it is.
        rgba = img if mode == "LA" else img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        grey_img = rgba.getchannel("L") if mode == "LA" else rgba.convert("RGB").convert("L")
        return np.asarray(grey_img, dtype=np.float32) / 255.0, alpha
    if mode != "L":
        img = img.convert("RGB").convert("L")  # "1", "P", CMYK, YCbCr, LAB, HSV, RGBX
    return np.asarray(img, dtype=np.float32) / 255.0, None


def images_to_array(images: Iterable[Image.Image]) -> np.ndarray:
    """PIL frames -> (F, H, W) float32 in [0, 1], 1 = white; colour frames are taken as grey."""
    arrays = [np.asarray(im.convert("L") if im.mode != "L" else im) for im in images]
    if not arrays:
        raise ValueError("images_to_array needs at least one image")
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"all frames must have one size, got {sorted(sizes)}")
    return np.stack(arrays).astype(np.float32) / 255.0  # (F, H, W)


def array_to_images(frames: np.ndarray | Sequence[np.ndarray]) -> list[Image.Image]:
    """(F, H, W) floats in [0, 1] -> F images of mode "L"; out-of-range values are clipped."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (F, H, W), got shape {frames.shape}")
    pixels = np.rint(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)  # (F, H, W)
    return [Image.fromarray(frame, mode="L") for frame in pixels]


def render_text(text: str, size: int = 512, font: str | Path | None = None) -> Image.Image:
    """``text`` as a line drawing: outlined letters, dark on white, centred in a square.

    Letters are drawn as outlines, not solid shapes: the model knows drawings made of strokes,
    and an outline is one, while a filled glyph is a blob. The font (Pillow's scalable default,
    or a .ttf/.otf file) is sized so the text fills 80 % of the square.
    """
    stroke = max(1, size // 128)
    canvas = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(canvas)

    def font_of(px: int):
        return ImageFont.truetype(str(font), px) if font else ImageFont.load_default(size=px)

    def box(px: int) -> tuple[float, float, float, float]:
        return draw.multiline_textbbox((0, 0), text, font=font_of(px), stroke_width=stroke,
                                       align="center")

    lo, hi = 4, size  # binary search for the largest font size that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        left, top, right, bottom = box(mid)
        fits = right - left <= 0.8 * size and bottom - top <= 0.8 * size
        lo, hi = (mid, hi) if fits else (lo, mid - 1)
    left, top, right, bottom = box(lo)
    origin = ((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top)
    draw.multiline_text(origin, text, font=font_of(lo), fill=255, stroke_width=stroke,
                        stroke_fill=0, align="center")
    return canvas
