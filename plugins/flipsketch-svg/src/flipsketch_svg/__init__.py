"""flipsketch writers for vector output: an animated SVG, or a folder of one SVG per frame.

Sketch artists work in vectors (Live-Sketch animates SVG strokes), and a vector clip scales to
any size and edits in Inkscape or Illustrator. Each frame is traced with vtracer (a maintained
raster-to-vector tracer) in binary mode: the ink becomes filled black paths and everything
else stays transparent, so the result sits on any background, like ``--transparent`` does.

Two writers:

- ``svg`` for names ending in ``.svg``: one file, one ``<g class="frame">`` per frame, each
  shown for 1/fps s in a loop by SMIL ``<animate>`` (see ``animated_svg`` for why SMIL);
- ``svg-frames`` for names ending in ``.svgs``: a folder of ``frame_000.svg`` ..., the vector
  twin of the built-in PNG frames folder. A folder name needs a suffix of its own because
  ``frames.svg/`` and ``frames.svg`` are the same path to flipsketch, and a name without a
  suffix already means PNG frames. The writer also takes a plain folder name when named
  explicitly (``save_frames(frames, "frames", writer="svg-frames")``), which is what a
  ``--svg`` flag would do.

flipsketch itself writes the result atomically (a hidden temporary sibling renamed into place),
so a writer here only encodes into the path it is given.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import vtracer
from PIL import Image

from flipsketch.api import INK_THRESHOLD, on_white
from flipsketch.plugins import Register, Writer, hookimpl

SVG_NS = "http://www.w3.org/2000/svg"
INK = "#000000"
# A pixel is ink when, laid on white paper, it is darker than half grey: flipsketch's own ink
# line (flipsketch.api.INK_THRESHOLD, 0.5 on a [0, 1] scale; on 0-255 grey "< 127.5" is
# "< 128"), so lineart, binarize and --transparent frames all trace to the strokes a viewer
# sees and the evaluation scores.
INK_BELOW = INK_THRESHOLD * 255
# Tracing options. Smooth splines with vtracer's own fitting thresholds: tighter corner or
# splice thresholds, or polygons, moved the ink-mask IoU against the PNG by under 0.02, while
# smooth curves are why an artist wants vectors. No speckle filter: which dots are noise is
# the post-processor's call, and at 64 px a short 1-px stroke is smaller than vtracer's
# default of 4. Two decimals is 1/100 px, far below what a screen shows, and halves the file.
TRACE_OPTIONS = {"colormode": "binary", "mode": "spline", "filter_speckle": 0,
                 "path_precision": 2}

ET.register_namespace("", SVG_NS)


# -- tracing -----------------------------------------------------------------------------------
def ink_mask(frame: Image.Image) -> np.ndarray:
    """(H, W) bool: where the frame has ink, whatever its mode (grey, RGB, or black on
    transparent, whose darkness is its opacity)."""
    return np.asarray(on_white(frame).convert("L")) < INK_BELOW


def trace(frame: Image.Image) -> list[ET.Element]:
    """The frame's ink as SVG ``<path>`` elements, filled black, in frame pixel coordinates.

    vtracer is given a clean black-on-white picture rather than the frame itself, so that what
    counts as ink is decided here once (grey anti-aliasing and alpha included) and binary mode
    has nothing left to guess. Only the black paths are kept: the paper is never drawn.
    """
    mask = ink_mask(frame)
    if not mask.any():
        return []
    # Handed over as an uncompressed 1-bit PNG: vtracer decodes it natively, where a Python
    # list of one RGBA tuple per pixel (convert_pixels_to_svg) cost ~10x the tracing itself.
    png = io.BytesIO()
    Image.fromarray(~mask).save(png, format="PNG", compress_level=0)  # ink black, paper white
    traced = ET.fromstring(vtracer.convert_raw_image_to_svg(png.getvalue(), img_format="png",
                                                            **TRACE_OPTIONS))
    paths = []
    for element in traced.iter(f"{{{SVG_NS}}}path"):
        if element.get("fill", "").lower() not in (INK, "#000", "black"):
            continue  # the paper's paths, if a tracer version emits any
        path = ET.Element(f"{{{SVG_NS}}}path", {"d": element.get("d", ""), "fill": INK})
        if element.get("transform"):
            path.set("transform", element.get("transform", ""))
        paths.append(path)
    return paths


# -- documents ---------------------------------------------------------------------------------
def _svg_root(size: tuple[int, int]) -> ET.Element:
    """An ``<svg>`` whose user units are frame pixels; no background, so paper is transparent."""
    w, h = size
    return ET.Element(f"{{{SVG_NS}}}svg", {"width": str(w), "height": str(h),
                                            "viewBox": f"0 0 {w} {h}"})


def _check_sizes(frames: list[Image.Image]) -> tuple[int, int]:
    size = frames[0].size
    if any(frame.size != size for frame in frames):
        raise ValueError("all frames of an SVG animation must have one size")
    return size


def _to_bytes(root: ET.Element) -> bytes:
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _fraction(x: float) -> str:
    return f"{x:.6g}"


def animated_svg(frames: list[Image.Image], fps: float) -> ET.Element:
    """One ``<g class="frame">`` per frame, each visible during its 1/fps s of the loop.

    The timing is SMIL, one ``<animate attributeName="visibility" calcMode="discrete">`` per
    frame over the whole clip's duration, repeated indefinitely. SMIL rather than CSS
    keyframes: both play in browsers (also through ``<img>``), but SMIL also plays in
    stand-alone viewers that run no CSS animations, and its timing is plain attributes that a
    tool can read back. A renderer without animation shows the first frame, the drawing,
    because every other frame is hidden until its animation says otherwise.
    """
    count = len(frames)
    root = _svg_root(_check_sizes(frames))
    duration = count / fps
    ET.SubElement(root, f"{{{SVG_NS}}}title").text = (
        f"flipsketch animation: {count} frames at {fps:g} fps")
    for i, frame in enumerate(frames):
        group = ET.SubElement(root, f"{{{SVG_NS}}}g", {
            "id": f"frame-{i}", "class": "frame", "visibility": "visible" if i == 0 else "hidden"})
        if count > 1:
            # keyTimes are fractions of the loop; the last key holds until the loop restarts.
            start, end = i / count, (i + 1) / count
            if i == 0:
                values, times = ["visible", "hidden"], [0.0, end]
            elif i == count - 1:
                values, times = ["hidden", "visible"], [0.0, start]
            else:
                values, times = ["hidden", "visible", "hidden"], [0.0, start, end]
            ET.SubElement(group, f"{{{SVG_NS}}}animate", {
                "attributeName": "visibility", "values": ";".join(values),
                "keyTimes": ";".join(_fraction(t) for t in times), "dur": f"{duration:.6g}s",
                "calcMode": "discrete", "repeatCount": "indefinite"})
        group.extend(trace(frame))
    return root


def frame_svg(frame: Image.Image) -> ET.Element:
    """One frame as a stand-alone SVG document."""
    root = _svg_root(frame.size)
    root.extend(trace(frame))
    return root


# -- writers -----------------------------------------------------------------------------------
def write_svg(frames: list[Image.Image], path: Path, fps: float) -> None:
    """An animated SVG that plays in a browser (writer ``svg``, names ending in ``.svg``)."""
    path.write_bytes(_to_bytes(animated_svg(frames, fps)))


def write_svg_frames(frames: list[Image.Image], path: Path, fps: float) -> None:
    """A folder of frame_000.svg ..., named like the built-in PNG frames (writer
    ``svg-frames``, names ending in ``.svgs``); ``fps`` has no place in a still."""
    _check_sizes(frames)  # frames of one clip, as for the animated SVG; checked before writing
    path.mkdir()
    digits = max(3, len(str(len(frames) - 1)))
    for i, frame in enumerate(frames):
        (path / f"frame_{i:0{digits}d}.svg").write_bytes(_to_bytes(frame_svg(frame)))


@hookimpl
def register_writers(register: Register) -> None:
    register("svg", Writer("svg", (".svg",), write_svg))
    register("svg-frames", Writer("svg-frames", (".svgs",), write_svg_frames, folder=True))
