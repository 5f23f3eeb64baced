"""Post-processors: decoded grey frames -> the images a writer saves.

The model decodes soft, slightly noisy grey frames at its own resolution. ``binarize`` turns
them back into clean black-on-white line art the way the paper's demo did (resize, then Otsu);
``raw`` keeps the grey levels for users who post-process themselves. Both can output RGBA with
transparent paper, so an animation can be laid over other artwork.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from flipsketch import hookimpl
from flipsketch.errors import UsageError
from flipsketch.hookspecs import Register
from flipsketch.images import array_to_images, images_to_array

# Below this separation between the mean of the ink and the mean of the paper class (on the
# 0..1 grey scale), the clip is taken as blank: Otsu always finds *some* split, and on a blank
# frame that split runs through the VAE's faint noise and paints salt-and-pepper specks.
MIN_CONTRAST = 0.1


@dataclass
class PostprocessSettings:
    """How frames leave the pipeline: square side in pixels, and paper white or transparent."""

    size: int = 512
    transparent: bool = False

    def __post_init__(self) -> None:
        if self.size < 1:
            raise UsageError(f"output size must be at least 1 pixel, got {self.size}; "
                             f"pass a positive size such as 512")


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


def binarize(frames: list[Image.Image], settings: PostprocessSettings) -> list[Image.Image]:
    """Black strokes on white (or on transparency), one threshold for the whole clip.

    A per-frame threshold would move with each frame's amount of ink and make thin strokes
    flicker in and out; pooling all frames keeps the line weight steady through the clip.
    """
    grey = images_to_array(_resized(frames, settings.size))  # (F, S, S) in [0, 1]
    threshold = otsu_threshold(grey)
    ink = grey < threshold
    if not ink.any() or ink.all() or grey[~ink].mean() - grey[ink].mean() < MIN_CONTRAST:
        ink = grey < 0.5  # blank clip: keep what is clearly dark, drop the noise
    return _finish(np.where(ink, 0.0, 1.0), settings.transparent)


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

@hookimpl
def register_postprocessors(register: Register) -> None:
    register("binarize", binarize)
    register("raw", raw)
