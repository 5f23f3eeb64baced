"""The hand-drawn look: a quick pen's wobble, misplacement and overshoot (``hand_drawn``), and
strokes drawn into an antialiased frame (``render_strokes``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from flipsketch.training.synth.subjects import Stroke


def hand_drawn(stroke: Stroke, rng: np.random.Generator) -> Stroke:
    """Wobble, misplace and overshoot one stroke the way a quick pen does.

    Draws the same 18 random numbers whatever the stroke's length, so the shape rng stays in
    step across frames even when a limb moves.
    """
    r = rng.random(18)
    seg = np.linalg.norm(np.diff(stroke, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])  # arc length along the stroke
    # Overshoot: carry on past either end along the end's direction.
    if r[12] < 0.3 and seg[0] > 0:
        head = stroke[0] + (stroke[0] - stroke[1]) / seg[0] * (0.04 + 0.1 * r[13])
        stroke, s = np.vstack([head, stroke]), np.concatenate([[s[0] - 0.04 - 0.1 * r[13]], s])
    if r[14] < 0.3 and seg[-1] > 0:
        tail = stroke[-1] + (stroke[-1] - stroke[-2]) / seg[-1] * (0.04 + 0.1 * r[15])
        stroke, s = np.vstack([stroke, tail]), np.concatenate([s, [s[-1] + 0.04 + 0.1 * r[15]]])
    # Resample densely so the wobble bends straight lines too: ~1 point per 0.06 units.
    n = max(4, int((s[-1] - s[0]) / 0.06))
    u = np.linspace(s[0], s[-1], n)
    pts = np.stack([np.interp(u, s, stroke[:, 0]), np.interp(u, s, stroke[:, 1])], axis=1)
    # Smooth wobble: two sinusoids per axis along the arc length, plus a small misplacement.
    amp, freq, phase = 0.012 + 0.025 * r[0:4], 0.3 + 1.2 * r[4:8], 2 * np.pi * r[8:12]
    wobble = amp * np.sin(2 * np.pi * freq * u[:, None] + phase)  # (n, 4)
    pts[:, 0] += wobble[:, 0] + wobble[:, 1]
    pts[:, 1] += wobble[:, 2] + wobble[:, 3]
    return pts + 0.06 * (r[16:18] - 0.5)


def render_strokes(strokes: list[Stroke], widths: np.ndarray, size: int) -> np.ndarray:
    """Pixel-coordinate strokes -> (H, W) float32 frame: black ink on white, antialiased by
    drawing at twice the size and halving."""
    canvas = Image.new("L", (2 * size, 2 * size), 255)
    draw = ImageDraw.Draw(canvas)
    for stroke, width in zip(strokes, widths, strict=True):
        w = max(2, round(2 * width))
        pts = stroke * 2
        draw.line([tuple(p) for p in pts.tolist()], fill=0, width=w, joint="curve")
        if w > 3:  # round caps
            r = w / 2 - 0.5
            for x, y in (pts[0], pts[-1]):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
    return np.asarray(canvas.reduce(2), dtype=np.float32) / 255.0
