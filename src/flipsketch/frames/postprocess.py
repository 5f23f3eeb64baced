"""Post-processors: decoded grey frames -> the images a writer saves.

The model decodes soft, slightly noisy grey frames at its own resolution. ``binarize`` turns
them back into clean black-on-white line art the way the paper's demo did (resize, then Otsu);
``raw`` keeps the grey levels for users who post-process themselves. ``lineart`` goes further
than ``binarize``: the model draws at 128 px, so upscaled strokes come out several times thicker
than the user's pen; it thins the thresholded strokes to one-pixel centre lines and redraws them
at the input drawing's own stroke width (``measure_stroke_width``). All can output RGBA with
transparent paper, so an animation can be laid over other artwork.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from flipsketch.frames.images import array_to_images, images_to_array, to_grey_square
from flipsketch.plugins import PostprocessSettings

# Below this separation between the mean of the ink and the mean of the paper class (on the
# 0..1 grey scale), the clip is taken as blank: Otsu always finds *some* split, and on a blank
# frame that split runs through the VAE's faint noise and paints salt-and-pepper specks.
MIN_CONTRAST = 0.1


def otsu_threshold(grey: np.ndarray) -> float:
    """Otsu's threshold of any array of grey values: values below it are ink, the rest paper.

    The histogram has 256 bins over the data's own range, so uint8 pixels and 0..1 floats both
    work and the threshold comes back on the input's scale. A constant input has no two
    classes; its own value is returned, so that nothing lies below it.
    """
    values = np.asarray(grey, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return lo
    counts, edges = np.histogram(values, bins=256, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    p = counts / counts.sum()

    # Split after bin k: class 0 = bins 0..k, class 1 = bins k+1..255.
    w0 = np.cumsum(p)[:-1]
    w1 = 1.0 - w0
    mass0 = np.cumsum(p * centres)[:-1]
    total = mass0[-1] + p[-1] * centres[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * w0 - mass0) ** 2 / (w0 * w1)  # = w0 * w1 * (mu0 - mu1)^2
    between[(w0 <= 0) | (w1 <= 0)] = -1.0  # an empty class is no split
    k = int(np.argmax(between))
    return float(edges[k + 1])


def ink_of(grey: np.ndarray) -> np.ndarray:
    """Ink mask of grey frames (..., H, W) in [0, 1], one Otsu threshold for all of them.

    A per-frame threshold would move with each frame's amount of ink and make thin strokes
    flicker in and out; pooling all frames keeps the line weight steady through the clip.
    """
    threshold = otsu_threshold(grey)
    ink = grey < threshold
    if not ink.any() or ink.all() or grey[~ink].mean() - grey[ink].mean() < MIN_CONTRAST:
        ink = grey < 0.5  # blank clip: keep what is clearly dark, drop the noise
    return ink


def binarize(frames: list[Image.Image], settings: PostprocessSettings) -> list[Image.Image]:
    """Black strokes on white (or on transparency), one threshold for the whole clip."""
    grey = images_to_array(_resized(frames, settings.size))  # (F, S, S) in [0, 1]
    return _finish(np.where(ink_of(grey), 0.0, 1.0), settings.transparent)


# Pen width of a text-only clip, in pixels per 512 output pixels: the median of the drawings
# in the project's evaluation set (../shared/sketches: 6.4-9.2 px at 512 by
# measure_stroke_width, median 7.5).
DEFAULT_STROKE_WIDTH = 7.5


def lineart(frames: list[Image.Image], settings: PostprocessSettings) -> list[Image.Image]:
    """Crisp strokes at the pen width of the input: threshold, thin, redraw.

    Upscaling a 128 px frame four times makes every stroke four times too thick, and a
    threshold keeps that thickness. Thinning the ink to its centre lines and drawing them
    again with a round pen of the input's width gives the drawing's own line weight at any
    output size.
    """
    grey = images_to_array(_resized(frames, settings.size))  # (F, S, S) in [0, 1]
    width = settings.stroke_width
    if width is None and settings.sketch is not None:
        drawing = images_to_array([to_grey_square(settings.sketch, settings.size)])[0]
        width = measure_stroke_width(drawing)
    if width is None:
        width = DEFAULT_STROKE_WIDTH * settings.size / 512
    pen = _disc(width)
    out = []
    for ink in ink_of(grey):  # (S, S) bool
        lines = thin(ink)
        out.append(cv2.dilate(lines.astype(np.uint8), pen) > 0)
    return _finish(np.where(np.stack(out), 0.0, 1.0), settings.transparent)


def measure_stroke_width(grey: np.ndarray) -> float:
    """Mean pen width in pixels of a drawing (H, W) in [0, 1]: its ink area over the length of
    its centre lines (a stroke of width w and length L covers about w * L pixels)."""
    ink = ink_of(grey)
    if not ink.any():
        return 1.0
    return max(1.0, float(ink.sum()) / max(int(thin(ink).sum()), 1))


def _disc(diameter: float) -> np.ndarray:
    """A round pen: the pixels within diameter / 2 of the centre (at least one pixel)."""
    r = max(diameter / 2, 0.5)
    k = int(np.ceil(r - 0.5))
    ys, xs = np.mgrid[-k:k + 1, -k:k + 1]
    return ((ys**2 + xs**2) <= r * r + 1e-9).astype(np.uint8) | (ys == 0) & (xs == 0)


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: a boolean mask (H, W) -> its one-pixel-wide centre lines.

    Each pass removes, in two sub-steps, the boundary pixels whose removal keeps every stroke
    connected and its ends in place; it stops when a pass removes nothing.
    """
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for first in (True, False):
            # Neighbours P2..P9, clockwise from north, of every pixel.
            p2, p3, p4 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:]
            p5, p6, p7 = img[2:, 2:], img[2:, 1:-1], img[2:, :-2]
            p8, p9 = img[1:-1, :-2], img[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
            neighbours = sum(n.astype(np.int32) for n in ring[:8])
            transitions = sum(((a == 0) & (b == 1)).astype(np.uint8)
                              for a, b in zip(ring[:-1], ring[1:], strict=True))
            if first:
                keep_ends = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                keep_ends = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = ((img[1:-1, 1:-1] == 1) & (neighbours >= 2) & (neighbours <= 6)
                      & (transitions == 1) & keep_ends)
            if remove.any():
                img[1:-1, 1:-1][remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def raw(frames: list[Image.Image], settings: PostprocessSettings) -> list[Image.Image]:
    """Grey levels as decoded, resized; with transparency, darkness becomes opacity."""
    return _finish(images_to_array(_resized(frames, settings.size)), settings.transparent)


def _resized(frames: list[Image.Image], size: int) -> list[Image.Image]:
    return [f.convert("L").resize((size, size), Image.Resampling.LANCZOS) for f in frames]


def _finish(grey: np.ndarray, transparent: bool) -> list[Image.Image]:
    """(F, S, S) grey in [0, 1] -> mode "L" frames, or RGBA black ink with alpha = 1 - grey."""
    if not transparent:
        return array_to_images(grey)
    layers = []
    for coverage in array_to_images(1.0 - grey):  # (S, S) ink opacity
        layer = Image.new("RGBA", coverage.size, (0, 0, 0, 0))
        layer.putalpha(coverage)
        layers.append(layer)
    return layers
