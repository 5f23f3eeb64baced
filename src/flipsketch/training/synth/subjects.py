"""The named subjects as strokes (``DRAWERS``): a fish, a bird, a stick figure, ... each
able to move its own parts at time t.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flipsketch.training.synth.vocabulary import TRANSLATIONS

# A drawer takes (rng, t, motion): rng draws the shape's own variation (it is re-seeded
# identically every frame, so draw the same numbers whatever t is), t in [0, 1] is the time in
# the clip for subjects that move their parts. It returns polylines (n, 2) in the unit box.

Stroke = np.ndarray  # (n, 2)
Drawer = Callable[[np.random.Generator, float, str | None], list[Stroke]]


def polyline(*points: tuple[float, float]) -> Stroke:
    return np.asarray(points, dtype=np.float64)


def ellipse(
    cx: float, cy: float, rx: float, ry: float, rng: np.random.Generator, tilt: float = 0.0
) -> Stroke:
    """A closed loop drawn by hand: random start, ends overlapping or leaving a small gap."""
    start = rng.uniform(0, 2 * np.pi)
    sweep = 2 * np.pi * rng.uniform(0.96, 1.12)
    a = start + np.linspace(0, sweep, 28)
    x, y = rx * np.cos(a), ry * np.sin(a)
    c, s = np.cos(tilt), np.sin(tilt)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _bumpy(
    cx: float, cy: float, rx: float, ry: float, bumps: int, rng: np.random.Generator
) -> Stroke:
    """A scalloped loop (cloud, tree crown): ``bumps`` arcs bulging outwards."""
    start = rng.uniform(0, 2 * np.pi)
    a = start + np.linspace(0, 2 * np.pi * 1.04, 12 * bumps)
    r = 0.75 + 0.25 * np.abs(np.sin(bumps * (a - start) / 2))
    return np.stack([cx + rx * r * np.cos(a), cy + ry * r * np.sin(a)], axis=1)


def curve(p0: tuple, p1: tuple, p2: tuple, n: int = 14) -> Stroke:
    """Quadratic Bezier from p0 to p2 pulled towards p1."""
    s = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s**2 * p2


def rotate(points: Stroke, pivot: tuple[float, float], degrees: float) -> Stroke:
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - pivot) @ rot.T + pivot


def _limb(start: tuple[float, float], length: float, degrees: float) -> Stroke:
    """A straight limb from ``start``; 0 degrees hangs straight down, positive swings to +x."""
    a = np.deg2rad(degrees)
    return polyline(start, (start[0] + length * np.sin(a), start[1] + length * np.cos(a)))


def _ball(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    return [
        ellipse(0, 0, 1, 1, rng),
        curve((-0.55, -0.8), (-0.05, 0), (-0.55, 0.8)),
        curve((0.55, -0.8), (0.05, 0), (0.55, 0.8)),
        curve((-0.8, -0.05), (-0.78, -0.35), (-0.62, -0.52), n=6),  # shine: breaks the symmetry
    ]


def _star(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    inner = rng.uniform(0.38, 0.5)
    a = np.deg2rad(-90 + 36 * np.arange(11))
    r = np.where(np.arange(11) % 2 == 0, 1.0, inner) * rng.uniform(0.92, 1.0, 11)
    r[10] = r[0]
    star = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
    return [np.concatenate([star, star[1:2] * 0.2 + star[:1] * 0.8])]  # overlap at the tip


def _fish(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    wag = (30 if motion == "articulate" else 18) * np.sin(2 * np.pi * 2 * t)
    tail = polyline((-0.45, 0), (-1, -0.45), (-0.88, 0), (-1, 0.45), (-0.45, 0))
    tail = rotate(tail, (-0.45, 0), wag)
    return [
        curve((0.9, 0.02), (0.2, -0.85), (-0.45, 0)),
        curve((0.9, -0.02), (0.2, 0.8), (-0.45, 0)),
        tail,
        ellipse(0.5, -0.1, 0.07, 0.07, rng),
        curve((0.3, -0.28), (0.2, 0), (0.3, 0.28), n=8),
        polyline((0.05, -0.4), (-0.15, -0.66), (-0.3, -0.33)),
    ]


def _house(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    door = rng.uniform(-0.45, -0.1)
    return [
        polyline((-0.7, -0.1), (-0.7, 1), (0.7, 1), (0.7, -0.1)),
        polyline((-0.88, 0.02), (0, -0.9), (0.88, 0.02), (-0.88, 0.02)),
        polyline((door - 0.14, 1), (door - 0.14, 0.5), (door + 0.14, 0.5), (door + 0.14, 1)),
        polyline((0.25, 0.3), (0.5, 0.3), (0.5, 0.55), (0.25, 0.55), (0.25, 0.3)),
        polyline((0.375, 0.3), (0.375, 0.55)),
        polyline((0.38, -0.5), (0.38, -0.8), (0.56, -0.8), (0.56, -0.33)),  # chimney on the right
    ]


def _person(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Walks while translating sideways, waves otherwise."""
    swing = np.cos(2 * np.pi * 2 * t)  # two steps or waves per clip
    hip, shoulder = (0.0, 0.25), (0.0, -0.32)
    if motion in ("move_left", "move_right"):
        legs = (28 * swing, -28 * swing)
        arms = (-12 - 25 * swing, 12 + 25 * swing)
    else:
        legs = (18.0, -18.0)
        arms = ((130 + 40 * swing) if motion == "articulate" else (140 + 25 * swing), -20.0)
    return [
        ellipse(0, -0.72, 0.2, 0.2, rng),
        polyline((0, -0.52), hip),
        _limb(hip, 0.75, legs[0]),
        _limb(hip, 0.75, legs[1]),
        _limb(shoulder, 0.55, arms[0]),
        _limb(shoulder, 0.55, arms[1]),
    ]


def _flower(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Articulating, the head nods about the top of the stem."""
    petals = int(rng.integers(5, 8))
    turn = rng.uniform(0, 2 * np.pi)
    strokes = [ellipse(0, -0.45, 0.15, 0.15, rng)]
    for k in range(petals):
        a = turn + 2 * np.pi * k / petals
        strokes.append(
            ellipse(0.34 * np.cos(a), -0.45 + 0.34 * np.sin(a), 0.2, 0.1, rng, tilt=a)
        )
    if motion == "articulate":
        nod = 30 * np.sin(2 * np.pi * t)
        strokes = [rotate(s, (0, -0.2), nod) for s in strokes]
    strokes.append(curve((0, -0.3), (0.12, 0.35), (0, 1)))
    strokes.append(curve((0.04, 0.55), (0.3, 0.25), (0.45, 0.35), n=8))
    strokes.append(curve((0.04, 0.55), (0.3, 0.55), (0.45, 0.35), n=8))
    return strokes


def _tree(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Articulating, the crown rocks about the top of the trunk."""
    crown = _bumpy(0, -0.35, 0.65, 0.62, int(rng.integers(6, 9)), rng)
    if motion == "articulate":
        crown = rotate(crown, (0, 0.15), 18 * np.sin(2 * np.pi * t))
    return [
        polyline((-0.15, 1), (-0.11, 0.15)),
        polyline((0.15, 1), (0.11, 0.15)),
        crown,
        polyline((0.02, 0.1), (0.15, -0.15)),
    ]


def _heart(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    s = np.linspace(0, 2 * np.pi * rng.uniform(0.97, 1.06), 40)
    x = 16 * np.sin(s) ** 3
    y = -(13 * np.cos(s) - 5 * np.cos(2 * s) - 2 * np.cos(3 * s) - np.cos(4 * s))
    return [np.stack([x, y + 2.5], axis=1) / 16.5]


def _cloud(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    return [_bumpy(0, 0, 1, 0.55, int(rng.integers(5, 8)), rng)]


def _bird(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Facing right; the wing flaps twice per clip."""
    tip_y = -0.2 - 0.5 * np.cos(2 * np.pi * 2 * t)
    return [
        ellipse(0, 0.1, 0.55, 0.3, rng),
        ellipse(0.55, -0.22, 0.2, 0.2, rng),
        polyline((0.72, -0.28), (0.97, -0.2), (0.73, -0.13)),
        ellipse(0.6, -0.26, 0.03, 0.03, rng),
        polyline((-0.5, 0.05), (-0.95, -0.12), (-0.88, 0.18), (-0.5, 0.22)),
        curve((0.2, 0.0), (0.05, tip_y * 0.7), (-0.3, tip_y)),
        curve((-0.3, tip_y), (-0.25, 0.0), (-0.15, 0.05), n=8),
    ]


def _car(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Facing right: long bonnet in front, cabin towards the back."""
    return [
        polyline(
            (-0.7, 0.45), (-1, 0.45), (-1, 0.02), (-0.6, 0.0), (-0.45, -0.45), (0.2, -0.45),
            (0.45, 0.0), (1, 0.1), (1, 0.45), (0.7, 0.45),
        ),
        polyline((0.3, 0.45), (-0.3, 0.45)),
        ellipse(-0.5, 0.48, 0.2, 0.2, rng),
        ellipse(0.5, 0.48, 0.2, 0.2, rng),
        polyline((-0.1, -0.42), (-0.1, 0.0)),
        ellipse(0.88, 0.2, 0.06, 0.05, rng),
    ]


def _cat(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Sitting, tail curling up on the right; it swishes when articulating or travelling."""
    tail = curve((0.3, 0.9), (0.95, 0.75), (0.75, 0.1))
    if motion == "articulate" or motion in TRANSLATIONS:
        tail = rotate(tail, (0.3, 0.9), 35 * np.sin(2 * np.pi * 2 * t))
    return [
        ellipse(0, -0.45, 0.32, 0.29, rng),
        polyline((-0.27, -0.58), (-0.25, -0.95), (-0.06, -0.72)),
        polyline((0.27, -0.58), (0.25, -0.95), (0.06, -0.72)),
        ellipse(-0.11, -0.5, 0.04, 0.04, rng),
        ellipse(0.11, -0.5, 0.04, 0.04, rng),
        polyline((-0.12, -0.36), (-0.42, -0.4)),
        polyline((0.12, -0.36), (0.42, -0.4)),
        curve((-0.2, -0.18), (-0.55, 0.45), (-0.2, 1.0)),
        curve((0.2, -0.18), (0.55, 0.45), (0.2, 1.0)),
        polyline((-0.2, 1.0), (0.2, 1.0)),
        tail,
    ]


def _sun(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    rays = int(rng.integers(7, 11))
    turn = rng.uniform(0, 2 * np.pi)
    strokes = [ellipse(0, 0, 0.5, 0.5, rng)]
    for k in range(rays):
        a = turn + 2 * np.pi * k / rays
        strokes.append(polyline((0.65 * np.cos(a), 0.65 * np.sin(a)), (np.cos(a), np.sin(a))))
    strokes.append(curve((-0.25, 0.12), (0, 0.35), (0.25, 0.12), n=8))  # smile: which way is up
    return strokes


def _boat(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    return [
        polyline((-0.95, 0.3), (-0.6, 0.7), (0.6, 0.7), (1, 0.3), (-0.95, 0.3)),
        polyline((0, 0.3), (0, -0.95)),
        polyline((0.06, -0.88), (0.65, 0.18), (0.06, 0.18)),
        polyline((-0.06, -0.6), (-0.5, 0.18), (-0.06, 0.18)),
    ]


DRAWERS: dict[str, Drawer] = {
    "ball": _ball,
    "star": _star,
    "fish": _fish,
    "house": _house,
    "person": _person,
    "flower": _flower,
    "tree": _tree,
    "heart": _heart,
    "cloud": _cloud,
    "bird": _bird,
    "car": _car,
    "cat": _cat,
    "sun": _sun,
    "boat": _boat,
}
