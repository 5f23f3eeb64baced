"""Frame interpolation: more frames per second without new sampling.

The paper raises the frame rate of a sketch animation (with FILM) before turning it into a real
video (Sec. 5.3). The default interpolator here, ``flow``, estimates dense optical flow between
neighbouring frames in both directions with OpenCV's DIS algorithm, warps both frames to the
in-between time and blends them. A stroke therefore travels from its old place to its new one;
a plain cross-fade would instead show it twice, fading out in one place and in at the other.
Learned interpolators (FILM, RIFE) can be added as plugins through ``register_interpolators``.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from flipsketch.errors import UsageError
from flipsketch.frames.postprocess import otsu_threshold


def flow_interpolate(frames: list[Image.Image], factor: int) -> list[Image.Image]:
    """``factor - 1`` flow-warped frames between each pair; the originals are kept as they are.

    ``n`` frames become ``(n - 1) * factor + 1``: original frame ``i`` sits at index
    ``i * factor``. Grey ("L") frames stay grey; any other mode is interpolated as RGB.
    """
    if not isinstance(factor, int) or factor < 1:
        raise UsageError(f"interpolation factor must be a whole number >= 1, got {factor!r}; "
                         f"pass e.g. factor 2 to double the frame rate")
    if factor == 1 or len(frames) < 2:
        return list(frames)
    mode = "L" if frames[0].mode == "L" else "RGB"
    frames = [f.convert(mode) for f in frames]
    if len({f.size for f in frames}) > 1:
        raise UsageError("frames to interpolate have different sizes; resize them to one size")

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out: list[Image.Image] = []
    for a, b in zip(frames, frames[1:], strict=False):
        out.append(a)
        out.extend(_between(dis, a, b, factor))
    out.append(frames[-1])
    return out


def _between(dis, a: Image.Image, b: Image.Image, factor: int) -> list[Image.Image]:
    """The frames at t = 1/factor ... (factor-1)/factor between ``a`` (t=0) and ``b`` (t=1)."""
    pixels_a = np.asarray(a, dtype=np.float32)  # (h, w) or (h, w, 3)
    pixels_b = np.asarray(b, dtype=np.float32)
    grey_a, grey_b = _flow_input(a), _flow_input(b)
    flow_ab = dis.calc(grey_a, grey_b, None)  # (h, w, 2): a(x) matches b(x + flow_ab(x))
    flow_ba = dis.calc(grey_b, grey_a, None)

    h, w = grey_a.shape
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).astype(np.float32)
    result = []
    for k in range(1, factor):
        t = k / factor
        # Flow from the unknown middle frame back to each neighbour, approximated from the two
        # measured flows (Jiang et al., Super SloMo, eq. 4): motion is taken as linear in time.
        flow_ta = -(1 - t) * t * flow_ab + t * t * flow_ba  # (h, w, 2)
        flow_tb = (1 - t) * (1 - t) * flow_ab - t * (1 - t) * flow_ba
        warped_a = _warp(pixels_a, grid + flow_ta)
        warped_b = _warp(pixels_b, grid + flow_tb)
        middle = (1 - t) * warped_a + t * warped_b
        result.append(Image.fromarray(np.clip(np.rint(middle), 0, 255).astype(np.uint8),
                                      mode=a.mode))
    return result


def _flow_input(img: Image.Image) -> np.ndarray:
    """The uint8 image the flow is measured on.

    Sketch strokes are one or two pixels wide on flat paper: a stroke that moves further than
    its own width has nothing to match against, and flow on the drawing itself collapses into
    a cross-fade. Grey frames (line art) are therefore matched by their distance to the
    nearest stroke, a smooth field that moves with the strokes and reaches a sixth of the
    frame around them. Colour frames are matched by their blurred grey levels. Either way the
    sharp frames are what gets warped.
    """
    grey = np.asarray(img.convert("L"))  # (h, w) uint8
    if img.mode != "L":
        return cv2.GaussianBlur(grey, (0, 0), max(1.0, min(grey.shape) / 128))
    paper = (grey >= otsu_threshold(grey)).astype(np.uint8)  # 0 on strokes
    distance = cv2.distanceTransform(paper, cv2.DIST_L2, 5)  # (h, w) pixels to a stroke
    reach = max(8.0, min(grey.shape) / 6)
    return np.rint(np.clip(distance / reach, 0.0, 1.0) * 255).astype(np.uint8)


def _warp(pixels: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """``pixels`` sampled at ``coords`` (h, w, 2 as x, y); beyond the border, edges repeat."""
    return cv2.remap(pixels, coords[..., 0], coords[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
