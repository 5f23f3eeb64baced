"""Local deformations of a drawing: how Live-Sketch-style animations move strokes in place.

The authors fine-tuned on Live-Sketch animations, where strokes deform *within* the drawing (a
wave runs along a line, a shape breathes, a stem bends in the wind) while the drawing stays
roughly where it is. These functions move the points of a whole drawing's strokes in the unit
box (x right, y down, the drawing within about [-1, 1]) at time t in [0, 1]; they keep the
drawing's centre (``wave``, ``breathe``, ``wobble``) or its base (``bend``) in place, so what
moves is the strokes, not the drawing.

Each takes its sizes from ``rng`` once per clip (``DeformParams``), so every frame of a clip
deforms by the same law and only t changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Stroke = np.ndarray  # (n, 2)

# name -> caption phrases; these motions apply to any drawing, named subject or doodle
DEFORMATIONS: dict[str, tuple[str, ...]] = {
    "wave": ("waving", "rippling", "undulating", "wiggling like a wave", "rippling gently"),
    "breathe": ("breathing", "pulsing", "throbbing", "swelling and shrinking gently",
                "breathing in and out"),
    "wobble": ("wobbling", "jiggling", "trembling", "wobbling in place", "jiggling gently"),
    "bend": ("swaying in the wind", "bending in the breeze", "swaying gently",
             "bending back and forth"),
}


@dataclass(frozen=True)
class DeformParams:
    """The per-clip sizes of one deformation, drawn once (``draw_params``)."""

    amplitude: float  # unit-box units (wave, wobble, bend) or a relative scale (breathe)
    frequency: float  # spatial cycles per unit (wave, wobble)
    cycles: int  # temporal cycles per clip
    phases: tuple[float, ...]  # random phases (wobble's field)


def draw_params(kind: str, rng: np.random.Generator) -> DeformParams:
    """Sizes for ``kind``, chosen so the strokes visibly move but the drawing stays itself."""
    if kind not in DEFORMATIONS:
        raise ValueError(f"unknown deformation {kind!r}; use one of {', '.join(DEFORMATIONS)}")
    amplitude = {"wave": (0.12, 0.2), "breathe": (0.12, 0.2), "wobble": (0.09, 0.14),
                 "bend": (0.3, 0.45)}[kind]
    return DeformParams(amplitude=float(rng.uniform(*amplitude)),
                        frequency=float(rng.uniform(0.45, 0.8)),
                        cycles=int(rng.integers(1, 3)),
                        phases=tuple(float(p) for p in rng.uniform(0, 2 * np.pi, 4)))


def _wave(points: np.ndarray, t: float, p: DeformParams, box: tuple) -> np.ndarray:
    """A transverse wave travelling along x: y moves, x stays; the mean offset is removed so
    the drawing's centre holds still."""
    phase = 2 * np.pi * (p.frequency * points[:, 0] - p.cycles * t)
    offset = p.amplitude * np.sin(phase)
    return points + np.stack([np.zeros_like(offset), offset - offset.mean()], axis=1)


def _breathe(points: np.ndarray, t: float, p: DeformParams, box: tuple) -> np.ndarray:
    """Scale about the drawing's centre, up and back down ``cycles`` times (starts at 1)."""
    centre = (box[0] + box[1]) / 2
    factor = 1 + p.amplitude * np.sin(np.pi * p.cycles * t) ** 2
    return centre + (points - centre) * factor


def _wobble(points: np.ndarray, t: float, p: DeformParams, box: tuple) -> np.ndarray:
    """A smooth displacement field that changes with time: each region of the drawing shifts
    a little its own way, as a jelly does; zero at t = 0."""
    x, y = points[:, 0], points[:, 1]
    k, a, ph = 2 * np.pi * p.frequency, p.amplitude, p.phases
    s = np.sin(np.pi * p.cycles * t)  # 0 at both ends of a cycle
    dx = a * s * np.sin(k * y + ph[0]) * np.cos(k * x * 0.7 + ph[1])
    dy = a * s * np.sin(k * x + ph[2]) * np.cos(k * y * 0.7 + ph[3])
    d = np.stack([dx, dy], axis=1)
    return points + d - d.mean(axis=0)


def _bend(points: np.ndarray, t: float, p: DeformParams, box: tuple) -> np.ndarray:
    """Bend about the bottom of the drawing: the base stays, the top swings most (a stem or a
    tree in the wind), one way then the other."""
    low, high = box
    height = max(high[1] - low[1], 1e-6)
    lift = ((high[1] - points[:, 1]) / height).clip(0, 1)  # 0 at the bottom, 1 at the top
    dx = p.amplitude * np.sin(2 * np.pi * t) * lift**2
    return points + np.stack([dx, np.zeros_like(dx)], axis=1)


_LAWS: dict[str, Callable[[np.ndarray, float, DeformParams, tuple], np.ndarray]] = {
    "wave": _wave, "breathe": _breathe, "wobble": _wobble, "bend": _bend,
}


def deform(strokes: list[Stroke], kind: str, t: float, params: DeformParams,
           box: tuple[np.ndarray, np.ndarray]) -> list[Stroke]:
    """``strokes`` moved by deformation ``kind`` at time t. ``box`` is (low, high) corners of
    the drawing at rest, so every frame deforms about the same centre and base."""
    lengths = [len(s) for s in strokes]
    moved = _LAWS[kind](np.concatenate(strokes), float(t), params, box)
    return np.split(moved, np.cumsum(lengths)[:-1])


def bounds(strokes: list[Stroke]) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) corners of all the strokes' points."""
    every = np.concatenate(strokes)
    return every.min(axis=0), every.max(axis=0)
