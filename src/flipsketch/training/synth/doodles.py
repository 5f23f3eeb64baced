"""Generic line drawings (``DOODLE_DRAWERS``): squiggles, scribbles, closed shapes, words in a
stick alphabet (``LETTER_STROKES``) and compositions of such parts, for the drawings users make
that are none of the named subjects.
"""

from __future__ import annotations

import numpy as np

from flipsketch.training.synth.subjects import DRAWERS, Drawer, Stroke, curve, ellipse, polyline


def _smooth(points: np.ndarray, closed: bool = False, rounds: int = 3) -> Stroke:
    """Chaikin corner cutting: a polyline through random points becomes a smooth pen path."""
    for _ in range(rounds):
        nxt = np.roll(points, -1, axis=0) if closed else points[1:]
        cur = points if closed else points[:-1]
        cut = np.empty((2 * len(cur), 2))
        cut[0::2], cut[1::2] = 0.75 * cur + 0.25 * nxt, 0.25 * cur + 0.75 * nxt
        points = cut if closed else np.vstack([points[:1], cut, points[-1:]])
    return np.vstack([points, points[:1]]) if closed else points


def _fit(strokes: list[Stroke]) -> list[Stroke]:
    """Centre strokes and scale their longer side to 2 units (the drawers' unit box)."""
    every = np.concatenate(strokes)
    low, high = every.min(axis=0), every.max(axis=0)
    scale = 2.0 / max(float((high - low).max()), 1e-6)
    return [(s - (low + high) / 2) * scale for s in strokes]


def _squiggle(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """One to three smooth open curves through random points."""
    return _fit([_smooth(rng.uniform(-1, 1, (int(rng.integers(3, 7)), 2)))
                 for _ in range(int(rng.integers(1, 4)))])


def _scribble(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """A loopy scribble: a random walk with momentum, smoothed; sometimes a second one."""
    strokes = []
    for _ in range(1 + int(rng.random() < 0.3)):
        steps = int(rng.integers(8, 20))
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.9, steps))
        walk = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], axis=1), axis=0)
        strokes.append(_smooth(walk - walk.mean(axis=0), rounds=2))
    return _fit(strokes)


def _closed_shape(rng: np.random.Generator) -> Stroke:
    """A polygon, a star, a wobbly blob, an ellipse or a rounded box, about 2 units wide."""
    kind = rng.integers(5)
    if kind == 0:  # polygon
        n = int(rng.integers(3, 9))
        a = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, n, endpoint=False)
        r = rng.uniform(0.75, 1.0, n)
        pts = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
        return np.vstack([pts, pts[:1]])
    if kind == 1:  # star
        n = int(rng.integers(4, 8))
        a = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        r = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.35, 0.6))
        pts = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
        return np.vstack([pts, pts[:1]])
    if kind == 2:  # blob: a radius with a few random harmonics
        a = np.linspace(0, 2 * np.pi, 48)
        r = 1 + sum(rng.uniform(0, 0.25) * np.sin(k * a + rng.uniform(0, 2 * np.pi))
                    for k in range(2, 5))
        return np.stack([r * np.cos(a), rng.uniform(0.5, 1) * r * np.sin(a)], axis=1)
    if kind == 3:
        return ellipse(0, 0, 1, rng.uniform(0.4, 1), rng, tilt=rng.uniform(0, np.pi))
    w, h = 1.0, rng.uniform(0.4, 1)
    return _smooth(polyline((-w, -h), (w, -h), (w, h), (-w, h)), closed=True, rounds=2)


def _shape(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """A closed shape, often with small inner details (a dot, a tick, a line) like an eye or a
    gill line: the small things a user's drawing must keep."""
    strokes = [_closed_shape(rng)]
    for _ in range(int(rng.integers(0, 4))):
        x, y = rng.uniform(-0.5, 0.5, 2)
        if rng.random() < 0.5:
            size = rng.uniform(0.05, 0.15)
            strokes.append(ellipse(x, y, size, size, rng))
        else:
            strokes.append(curve((x, y), (x + rng.uniform(-0.2, 0.2), y + 0.15),
                                  (x + rng.uniform(-0.3, 0.3), y + rng.uniform(0.1, 0.4)), n=6))
    return strokes


# A stick alphabet: each letter is polylines in a 2 x 3 box (y down), "x,y x,y|next stroke".
_LETTERS = {
    "A": "0,3 1,0 2,3|0.5,1.8 1.5,1.8",
    "B": "0,3 0,0 1.4,0 1.8,0.4 1.8,1.1 1.4,1.5 0,1.5|1.4,1.5 1.9,1.9 1.9,2.6 1.4,3 0,3",
    "C": "2,0.4 1.5,0 0.5,0 0,0.6 0,2.4 0.5,3 1.5,3 2,2.6",
    "D": "0,0 0,3 1.2,3 2,2.2 2,0.8 1.2,0 0,0",
    "E": "2,0 0,0 0,3 2,3|0,1.5 1.5,1.5",
    "F": "2,0 0,0 0,3|0,1.5 1.5,1.5",
    "G": "2,0.4 1.5,0 0.5,0 0,0.6 0,2.4 0.5,3 1.5,3 2,2.5 2,1.6 1.1,1.6",
    "H": "0,0 0,3|2,0 2,3|0,1.5 2,1.5",
    "I": "1,0 1,3|0.4,0 1.6,0|0.4,3 1.6,3",
    "J": "2,0 2,2.4 1.5,3 0.5,3 0,2.4",
    "K": "0,0 0,3|2,0 0,1.8|0.7,1.2 2,3",
    "L": "0,0 0,3 2,3",
    "M": "0,3 0,0 1,1.8 2,0 2,3",
    "N": "0,3 0,0 2,3 2,0",
    "O": "1,0 1.8,0.5 2,1.5 1.8,2.5 1,3 0.2,2.5 0,1.5 0.2,0.5 1,0",
    "P": "0,3 0,0 1.5,0 2,0.5 2,1.1 1.5,1.6 0,1.6",
    "Q": "1,0 1.8,0.5 2,1.5 1.8,2.5 1,3 0.2,2.5 0,1.5 0.2,0.5 1,0|1.3,2.3 2.1,3.1",
    "R": "0,3 0,0 1.5,0 2,0.5 2,1.1 1.5,1.6 0,1.6|0.9,1.6 2,3",
    "S": "2,0.5 1.5,0 0.5,0 0,0.5 0,1.1 0.5,1.5 1.5,1.5 2,1.9 2,2.5 1.5,3 0.5,3 0,2.5",
    "T": "0,0 2,0|1,0 1,3",
    "U": "0,0 0,2.4 0.5,3 1.5,3 2,2.4 2,0",
    "V": "0,0 1,3 2,0",
    "W": "0,0 0.5,3 1,1.2 1.5,3 2,0",
    "X": "0,0 2,3|2,0 0,3",
    "Y": "0,0 1,1.5 2,0|1,1.5 1,3",
    "Z": "0,0 2,0 0,3 2,3",
}
LETTER_STROKES: dict[str, list[Stroke]] = {
    letter: [np.array([[float(v) for v in p.split(",")] for p in part.split()])
             for part in spec.split("|")]
    for letter, spec in _LETTERS.items()
}


def _word(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """One to four random capital letters side by side."""
    letters = rng.choice(list(LETTER_STROKES), int(rng.integers(1, 5)))
    gap = rng.uniform(2.4, 3.0)
    return _fit([s + (k * gap, 0) for k, letter in enumerate(letters)
                 for s in LETTER_STROKES[letter]])


def _parts(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Two to four doodles (or named subjects) side by side: drawings have several parts."""
    makers = (_squiggle, _scribble, _shape, _word, *DRAWERS.values())
    strokes = []
    for k in range(int(rng.integers(2, 5))):
        part = makers[rng.integers(len(makers))](rng, t, motion)
        size = rng.uniform(0.35, 0.7)
        where = (k - 1) * 1.1 + rng.uniform(-0.3, 0.3), rng.uniform(-0.8, 0.8)
        strokes += [s * size + where for s in part]
    return _fit(strokes)


DOODLE_DRAWERS: dict[str, Drawer] = {
    "squiggle": _squiggle,
    "scribble": _scribble,
    "shape": _shape,
    "word": _word,
    "parts": _parts,
}
