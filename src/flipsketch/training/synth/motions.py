"""Where the whole drawing goes over a clip (``motion_track``): translations, spins, growing,
bouncing, swaying; part motions leave it in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flipsketch.errors import UsageError
from flipsketch.training.synth.vocabulary import (
    BOUNCE_HEIGHT,
    GROW_FACTOR,
    MOTIONS,
    PART_MOTIONS,
    SPIN_DEGREES,
    SWAY_DEGREES,
    TRANSLATIONS,
    TRAVEL,
)


@dataclass
class Track:
    """Per-frame pose of the drawing relative to where it starts; arrays have shape (F,)."""

    degrees: np.ndarray  # rotation, positive = clockwise on screen (y points down)
    scale: np.ndarray
    dx: np.ndarray  # pixels
    dy: np.ndarray
    pivot_bottom: bool = False  # rotate about the bottom of the drawing (sway) not its centre


def motion_track(motion: str | None, t: np.ndarray, size: int, rng: np.random.Generator,
           travel: tuple[float, float] = TRAVEL) -> Track:
    zero, one = np.zeros_like(t), np.ones_like(t)
    if motion is None or motion in PART_MOTIONS:  # part motions leave the drawing in place
        return Track(zero, one, zero, zero)
    if motion in TRANSLATIONS:
        ux, uy = TRANSLATIONS[motion]
        distance = rng.uniform(*travel) * size * t  # constant speed
        return Track(zero, one, ux * distance, uy * distance)
    if motion in ("spin_cw", "spin_ccw"):
        sign = 1 if motion == "spin_cw" else -1
        return Track(sign * rng.uniform(*SPIN_DEGREES) * t, one, zero, zero)
    if motion in ("grow", "shrink"):
        factor = rng.uniform(*GROW_FACTOR) ** (1 if motion == "grow" else -1)
        return Track(zero, factor**t, zero, zero)  # geometric: the same ratio every frame
    if motion == "bounce":
        hops = int(rng.integers(1, 3))
        height = rng.uniform(*BOUNCE_HEIGHT) * size
        return Track(zero, one, zero, -height * np.abs(np.sin(np.pi * hops * t)))
    if motion == "sway":
        degrees = rng.uniform(*SWAY_DEGREES) * np.sin(2 * np.pi * t)
        return Track(degrees, one, zero, zero, pivot_bottom=True)
    raise UsageError(f"unknown motion {motion!r}; use one of {', '.join(MOTIONS)}")
