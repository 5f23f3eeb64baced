"""Procedural sketch animations: the training data of the tiny model.

A tiny model trained on a CPU has to learn "prompt -> direction" from data alone, so every clip
here shows one hand-drawn-looking subject doing one large, unambiguous motion, and its caption
names exactly that subject and that motion.

Drawings are made of strokes: polylines in a unit box (x right, y down, the subject within
about [-1, 1]), turned hand-drawn by a smooth wobble, a slight misplacement, occasional
overshoot and gaps at the ends of closed loops, and a per-stroke pen width. A clip draws the
same strokes every frame (the wobble comes from a per-clip seed), moved by the motion, plus a
faint per-frame "line boil" as in real hand-drawn animation. The stick figure walks or waves,
the bird flaps and the fish wags its tail while they move. Frames are drawn with Pillow at twice
the size and halved, which antialiases the ink.

Caption grammar (``make_caption``)::

    caption := DETERMINER " " NOUN " " PHRASE
    DETERMINER := "a" | "an" | "the"                # "an" before a vowel
    NOUN := SUBJECTS[subject]                       # e.g. "fish", "stick figure"
    PHRASE := one of MOTIONS[motion], with "{verbs}" / "{verbing}" replaced by
              LOCOMOTION[subject] (default "moves" / "moving")

e.g. "a fish moving to the right", "the fish swims right", "a car driving to the left". Every
caption names one subject and one motion and nothing else.

A user's drawing is rarely one of the named subjects, and composition can only carry an
appearance the model's features can represent; so a training animator can also draw *doodles*
(``doodle_share``): random smooth curves, scribbles, closed shapes, words in a stick alphabet
and compositions of several such parts, captioned with a generic noun (NOUN := one of
``DOODLES[kind]``, e.g. "a doodle spinning clockwise", "the word moving to the left"). With
``generic_share`` a named subject's caption also uses a generic noun ("a drawing moving up").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flipsketch.errors import UsageError
from flipsketch.files import check_writable_folder, remove, replace_atomically, staging_folder
from flipsketch.frames.images import array_to_images
from flipsketch.frames.writers import write_gif, write_mp4, write_png_frames, write_webp
from flipsketch.training.deform import DEFORMATIONS, bounds, deform, draw_params

# -- vocabulary --------------------------------------------------------------------------------

# subject id -> the noun its captions use
SUBJECTS: dict[str, str] = {
    "ball": "ball",
    "star": "star",
    "fish": "fish",
    "house": "house",
    "person": "stick figure",
    "flower": "flower",
    "tree": "tree",
    "heart": "heart",
    "cloud": "cloud",
    "bird": "bird",
    "car": "car",
    "cat": "cat",
    "sun": "sun",
    "boat": "boat",
}

# subject id -> (third person, participle) of how it travels; others "moves" / "moving"
LOCOMOTION: dict[str, tuple[str, str]] = {
    "ball": ("rolls", "rolling"),
    "fish": ("swims", "swimming"),
    "person": ("walks", "walking"),
    "bird": ("flies", "flying"),
    "car": ("drives", "driving"),
    "cat": ("walks", "walking"),
    "cloud": ("drifts", "drifting"),
    "boat": ("sails", "sailing"),
}

# motion id -> caption phrases (paraphrases of one another)
MOTIONS: dict[str, tuple[str, ...]] = {
    "move_right": (
        "moving to the right",
        "going right",
        "{verbing} to the right",
        "{verbs} right",
        "moves to the right",
        "heading right",
    ),
    "move_left": (
        "moving to the left",
        "going left",
        "{verbing} to the left",
        "{verbs} left",
        "moves to the left",
        "heading left",
    ),
    "move_up": (
        "moving up",
        "going upward",
        "rising up",
        "rises",
        "moves upward",
        "floating up",
    ),
    "move_down": (
        "moving down",
        "going downward",
        "falling down",
        "falls",
        "moves downward",
        "sinking down",
    ),
    "spin_cw": (
        "spinning clockwise",
        "rotating clockwise",
        "turns clockwise",
        "spins clockwise",
        "turning around clockwise",
    ),
    "spin_ccw": (
        "spinning counterclockwise",
        "rotating anticlockwise",
        "turns counterclockwise",
        "spins anticlockwise",
        "turning around counterclockwise",
    ),
    "grow": (
        "growing bigger",
        "getting larger",
        "grows",
        "growing in size",
        "becomes bigger",
        "expanding",
    ),
    "shrink": (
        "shrinking",
        "getting smaller",
        "shrinks",
        "becoming smaller",
        "shrinking in size",
        "contracting",
    ),
    "bounce": (
        "bouncing",
        "bouncing up and down",
        "bounces",
        "hopping up and down",
        "jumps up and down",
    ),
    "sway": (
        "swaying",
        "swaying side to side",
        "sways back and forth",
        "rocking from side to side",
        "tilting back and forth",
    ),
}

# Never produced for training; evaluation asks for them to test generalisation. Each
# translation direction appears once, and each pair's subject and motion are trained separately.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("fish", "move_left"),
    ("cat", "move_right"),
    ("cloud", "move_up"),
    ("bird", "move_down"),
    ("star", "spin_ccw"),
    ("heart", "grow"),
)

TRANSLATIONS = {"move_right": (1, 0), "move_left": (-1, 0), "move_up": (0, -1), "move_down": (0, 1)}

# Each directional motion and its mirror image: a paired animator draws both from one drawing.
OPPOSITES = {"move_right": "move_left", "move_left": "move_right", "move_up": "move_down",
             "move_down": "move_up", "spin_cw": "spin_ccw", "spin_ccw": "spin_cw",
             "grow": "shrink", "shrink": "grow"}

# Part motions (Live-Sketch's kind): the drawing stays where it is and its strokes move.
# "articulate" moves a named subject's own part about its joint; its phrases depend on the
# subject. The deformations (training.deform) apply to any drawing.
ARTICULATIONS: dict[str, tuple[str, ...]] = {
    "fish": ("wagging its tail", "flicking its tail", "swishing its tail", "wags its tail"),
    "bird": ("flapping its wings", "beating its wings", "flaps its wings", "flapping"),
    "person": ("waving", "waving its arm", "waves hello", "waving hello"),
    "cat": ("wagging its tail", "swishing its tail", "flicking its tail", "wags its tail"),
    "flower": ("nodding in the breeze", "nodding its head", "nods gently", "nodding"),
    "tree": ("rustling in the wind", "shaking its crown", "rustling", "rocking its crown"),
}
PART_MOTIONS = ("articulate", *DEFORMATIONS)

# Motion sizes, as fractions of the frame width, degrees and factors.
TRAVEL = (0.25, 0.45)
GENTLE_TRAVEL = (0.06, 0.15)  # Live-Sketch-like: the drawing stays roughly where it was
SPIN_DEGREES = (90.0, 180.0)
GROW_FACTOR = (1.5, 1.7)
BOUNCE_HEIGHT = (0.25, 0.35)
SWAY_DEGREES = (15.0, 25.0)
PEN_WIDTH = (1.0, 4.0)  # pixels at 128 px


# doodle kind -> the generic nouns its captions use
DOODLES: dict[str, tuple[str, ...]] = {
    "squiggle": ("squiggle", "line", "curve", "doodle", "drawing"),
    "scribble": ("scribble", "doodle", "drawing", "sketch"),
    "shape": ("shape", "outline", "doodle", "drawing"),
    "word": ("word", "letters", "drawing"),
    "parts": ("drawing", "doodle", "sketch", "picture"),
}

# what any drawing may be called, whatever it shows
GENERIC_NOUNS = ("drawing", "doodle", "sketch", "picture")


def make_caption(subject: str, motion: str, rng: np.random.Generator,
                 noun: str | None = None) -> str:
    """One random paraphrase following the caption grammar in the module docstring; ``noun``
    replaces the subject's own (a generic caption: its locomotion verbs go too)."""
    verbs, verbing = ("moves", "moving") if noun else LOCOMOTION.get(subject, ("moves", "moving"))
    phrases = (ARTICULATIONS[subject] if motion == "articulate"
               else DEFORMATIONS.get(motion) or MOTIONS[motion])
    phrase = phrases[rng.integers(len(phrases))]
    noun = noun or SUBJECTS[subject]
    determiner = ("an" if noun[0] in "aeiou" else "a", "the")[rng.integers(2)]
    phrase = phrase.format(verbs=verbs, verbing=verbing)
    return f"{determiner} {noun} {phrase}"


# -- strokes -----------------------------------------------------------------------------------
# A drawer takes (rng, t, motion): rng draws the shape's own variation (it is re-seeded
# identically every frame, so draw the same numbers whatever t is), t in [0, 1] is the time in
# the clip for subjects that move their parts. It returns polylines (n, 2) in the unit box.

Stroke = np.ndarray  # (n, 2)
Drawer = Callable[[np.random.Generator, float, str | None], list[Stroke]]


def _pts(*points: tuple[float, float]) -> Stroke:
    return np.asarray(points, dtype=np.float64)


def _ellipse(
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


def _curve(p0: tuple, p1: tuple, p2: tuple, n: int = 14) -> Stroke:
    """Quadratic Bezier from p0 to p2 pulled towards p1."""
    s = np.linspace(0, 1, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s**2 * p2


def _rotate(points: Stroke, pivot: tuple[float, float], degrees: float) -> Stroke:
    a = np.deg2rad(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - pivot) @ rot.T + pivot


def _limb(start: tuple[float, float], length: float, degrees: float) -> Stroke:
    """A straight limb from ``start``; 0 degrees hangs straight down, positive swings to +x."""
    a = np.deg2rad(degrees)
    return _pts(start, (start[0] + length * np.sin(a), start[1] + length * np.cos(a)))


def _ball(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    return [
        _ellipse(0, 0, 1, 1, rng),
        _curve((-0.55, -0.8), (-0.05, 0), (-0.55, 0.8)),
        _curve((0.55, -0.8), (0.05, 0), (0.55, 0.8)),
        _curve((-0.8, -0.05), (-0.78, -0.35), (-0.62, -0.52), n=6),  # shine: breaks the symmetry
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
    tail = _pts((-0.45, 0), (-1, -0.45), (-0.88, 0), (-1, 0.45), (-0.45, 0))
    tail = _rotate(tail, (-0.45, 0), wag)
    return [
        _curve((0.9, 0.02), (0.2, -0.85), (-0.45, 0)),
        _curve((0.9, -0.02), (0.2, 0.8), (-0.45, 0)),
        tail,
        _ellipse(0.5, -0.1, 0.07, 0.07, rng),
        _curve((0.3, -0.28), (0.2, 0), (0.3, 0.28), n=8),
        _pts((0.05, -0.4), (-0.15, -0.66), (-0.3, -0.33)),
    ]


def _house(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    door = rng.uniform(-0.45, -0.1)
    return [
        _pts((-0.7, -0.1), (-0.7, 1), (0.7, 1), (0.7, -0.1)),
        _pts((-0.88, 0.02), (0, -0.9), (0.88, 0.02), (-0.88, 0.02)),
        _pts((door - 0.14, 1), (door - 0.14, 0.5), (door + 0.14, 0.5), (door + 0.14, 1)),
        _pts((0.25, 0.3), (0.5, 0.3), (0.5, 0.55), (0.25, 0.55), (0.25, 0.3)),
        _pts((0.375, 0.3), (0.375, 0.55)),
        _pts((0.38, -0.5), (0.38, -0.8), (0.56, -0.8), (0.56, -0.33)),  # chimney on the right
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
        _ellipse(0, -0.72, 0.2, 0.2, rng),
        _pts((0, -0.52), hip),
        _limb(hip, 0.75, legs[0]),
        _limb(hip, 0.75, legs[1]),
        _limb(shoulder, 0.55, arms[0]),
        _limb(shoulder, 0.55, arms[1]),
    ]


def _flower(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Articulating, the head nods about the top of the stem."""
    petals = int(rng.integers(5, 8))
    turn = rng.uniform(0, 2 * np.pi)
    strokes = [_ellipse(0, -0.45, 0.15, 0.15, rng)]
    for k in range(petals):
        a = turn + 2 * np.pi * k / petals
        strokes.append(
            _ellipse(0.34 * np.cos(a), -0.45 + 0.34 * np.sin(a), 0.2, 0.1, rng, tilt=a)
        )
    if motion == "articulate":
        nod = 30 * np.sin(2 * np.pi * t)
        strokes = [_rotate(s, (0, -0.2), nod) for s in strokes]
    strokes.append(_curve((0, -0.3), (0.12, 0.35), (0, 1)))
    strokes.append(_curve((0.04, 0.55), (0.3, 0.25), (0.45, 0.35), n=8))
    strokes.append(_curve((0.04, 0.55), (0.3, 0.55), (0.45, 0.35), n=8))
    return strokes


def _tree(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Articulating, the crown rocks about the top of the trunk."""
    crown = _bumpy(0, -0.35, 0.65, 0.62, int(rng.integers(6, 9)), rng)
    if motion == "articulate":
        crown = _rotate(crown, (0, 0.15), 18 * np.sin(2 * np.pi * t))
    return [
        _pts((-0.15, 1), (-0.11, 0.15)),
        _pts((0.15, 1), (0.11, 0.15)),
        crown,
        _pts((0.02, 0.1), (0.15, -0.15)),
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
        _ellipse(0, 0.1, 0.55, 0.3, rng),
        _ellipse(0.55, -0.22, 0.2, 0.2, rng),
        _pts((0.72, -0.28), (0.97, -0.2), (0.73, -0.13)),
        _ellipse(0.6, -0.26, 0.03, 0.03, rng),
        _pts((-0.5, 0.05), (-0.95, -0.12), (-0.88, 0.18), (-0.5, 0.22)),
        _curve((0.2, 0.0), (0.05, tip_y * 0.7), (-0.3, tip_y)),
        _curve((-0.3, tip_y), (-0.25, 0.0), (-0.15, 0.05), n=8),
    ]


def _car(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Facing right: long bonnet in front, cabin towards the back."""
    return [
        _pts(
            (-0.7, 0.45), (-1, 0.45), (-1, 0.02), (-0.6, 0.0), (-0.45, -0.45), (0.2, -0.45),
            (0.45, 0.0), (1, 0.1), (1, 0.45), (0.7, 0.45),
        ),
        _pts((0.3, 0.45), (-0.3, 0.45)),
        _ellipse(-0.5, 0.48, 0.2, 0.2, rng),
        _ellipse(0.5, 0.48, 0.2, 0.2, rng),
        _pts((-0.1, -0.42), (-0.1, 0.0)),
        _ellipse(0.88, 0.2, 0.06, 0.05, rng),
    ]


def _cat(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """Sitting, tail curling up on the right; it swishes when articulating or travelling."""
    tail = _curve((0.3, 0.9), (0.95, 0.75), (0.75, 0.1))
    if motion == "articulate" or motion in TRANSLATIONS:
        tail = _rotate(tail, (0.3, 0.9), 35 * np.sin(2 * np.pi * 2 * t))
    return [
        _ellipse(0, -0.45, 0.32, 0.29, rng),
        _pts((-0.27, -0.58), (-0.25, -0.95), (-0.06, -0.72)),
        _pts((0.27, -0.58), (0.25, -0.95), (0.06, -0.72)),
        _ellipse(-0.11, -0.5, 0.04, 0.04, rng),
        _ellipse(0.11, -0.5, 0.04, 0.04, rng),
        _pts((-0.12, -0.36), (-0.42, -0.4)),
        _pts((0.12, -0.36), (0.42, -0.4)),
        _curve((-0.2, -0.18), (-0.55, 0.45), (-0.2, 1.0)),
        _curve((0.2, -0.18), (0.55, 0.45), (0.2, 1.0)),
        _pts((-0.2, 1.0), (0.2, 1.0)),
        tail,
    ]


def _sun(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    rays = int(rng.integers(7, 11))
    turn = rng.uniform(0, 2 * np.pi)
    strokes = [_ellipse(0, 0, 0.5, 0.5, rng)]
    for k in range(rays):
        a = turn + 2 * np.pi * k / rays
        strokes.append(_pts((0.65 * np.cos(a), 0.65 * np.sin(a)), (np.cos(a), np.sin(a))))
    strokes.append(_curve((-0.25, 0.12), (0, 0.35), (0.25, 0.12), n=8))  # smile: which way is up
    return strokes


def _boat(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    return [
        _pts((-0.95, 0.3), (-0.6, 0.7), (0.6, 0.7), (1, 0.3), (-0.95, 0.3)),
        _pts((0, 0.3), (0, -0.95)),
        _pts((0.06, -0.88), (0.65, 0.18), (0.06, 0.18)),
        _pts((-0.06, -0.6), (-0.5, 0.18), (-0.06, 0.18)),
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


# -- doodles: generic line drawings ---------------------------------------------------------


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
        return _ellipse(0, 0, 1, rng.uniform(0.4, 1), rng, tilt=rng.uniform(0, np.pi))
    w, h = 1.0, rng.uniform(0.4, 1)
    return _smooth(_pts((-w, -h), (w, -h), (w, h), (-w, h)), closed=True, rounds=2)


def _shape(rng: np.random.Generator, t: float, motion: str | None) -> list[Stroke]:
    """A closed shape, often with small inner details (a dot, a tick, a line) like an eye or a
    gill line: the small things a user's drawing must keep."""
    strokes = [_closed_shape(rng)]
    for _ in range(int(rng.integers(0, 4))):
        x, y = rng.uniform(-0.5, 0.5, 2)
        if rng.random() < 0.5:
            size = rng.uniform(0.05, 0.15)
            strokes.append(_ellipse(x, y, size, size, rng))
        else:
            strokes.append(_curve((x, y), (x + rng.uniform(-0.2, 0.2), y + 0.15),
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


def _hand_drawn(stroke: Stroke, rng: np.random.Generator) -> Stroke:
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


# -- motions -----------------------------------------------------------------------------------


@dataclass
class _Track:
    """Per-frame pose of the drawing relative to where it starts; arrays have shape (F,)."""

    degrees: np.ndarray  # rotation, positive = clockwise on screen (y points down)
    scale: np.ndarray
    dx: np.ndarray  # pixels
    dy: np.ndarray
    pivot_bottom: bool = False  # rotate about the bottom of the drawing (sway) not its centre


def _track(motion: str | None, t: np.ndarray, size: int, rng: np.random.Generator,
           travel: tuple[float, float] = TRAVEL) -> _Track:
    zero, one = np.zeros_like(t), np.ones_like(t)
    if motion is None or motion in PART_MOTIONS:  # part motions leave the drawing in place
        return _Track(zero, one, zero, zero)
    if motion in TRANSLATIONS:
        ux, uy = TRANSLATIONS[motion]
        distance = rng.uniform(*travel) * size * t  # constant speed
        return _Track(zero, one, ux * distance, uy * distance)
    if motion in ("spin_cw", "spin_ccw"):
        sign = 1 if motion == "spin_cw" else -1
        return _Track(sign * rng.uniform(*SPIN_DEGREES) * t, one, zero, zero)
    if motion in ("grow", "shrink"):
        factor = rng.uniform(*GROW_FACTOR) ** (1 if motion == "grow" else -1)
        return _Track(zero, factor**t, zero, zero)  # geometric: the same ratio every frame
    if motion == "bounce":
        hops = int(rng.integers(1, 3))
        height = rng.uniform(*BOUNCE_HEIGHT) * size
        return _Track(zero, one, zero, -height * np.abs(np.sin(np.pi * hops * t)))
    if motion == "sway":
        degrees = rng.uniform(*SWAY_DEGREES) * np.sin(2 * np.pi * t)
        return _Track(degrees, one, zero, zero, pivot_bottom=True)
    raise UsageError(f"unknown motion {motion!r}; use one of {', '.join(MOTIONS)}")


# -- clips -------------------------------------------------------------------------------------


@dataclass
class SyntheticClip:
    """One synthetic animation and the truth about it (evaluation compares against these)."""

    frames: np.ndarray  # (F, H, W) float32 in [0, 1], 1 = white
    caption: str
    subject: str
    motion: str


class SketchAnimator:
    """Deterministic synthetic clips: ``clip(i)`` depends only on (seed, i) and the settings.

    ``held_out=False`` draws (subject, motion) pairs from all pairs except ``HELD_OUT_PAIRS``
    (training); ``held_out=True`` draws only those pairs (evaluation). Pairs are equally likely
    unless ``motion_weights`` (motion -> relative weight, 1 for motions not named) says
    otherwise: a training run can show more of the motions that are hard to learn.
    ``doodle_share`` of the clips (training only) show a doodle instead of a named subject, and
    ``generic_share`` of the named subjects' captions call them by a generic noun.
    ``part_share`` of the clips (training only) make a part motion in place instead
    (``PART_MOTIONS``: a named subject's articulation, or a deformation of any drawing).
    ``travel`` is the range of a translation's distance, as a fraction of the frame
    (``GENTLE_TRAVEL`` for Live-Sketch-like clips). With ``paired``, clips 2k and 2k+1 are
    one drawing doing opposite directional motions (``OPPOSITES``), same placement and caption
    words but the direction; a non-directional clip's partner is an independent clip. The
    defaults (shares 0, ``TRAVEL``, unpaired) leave the clips of earlier versions unchanged.
    """

    def __init__(
        self, size: int = 128, num_frames: int = 10, seed: int = 0, held_out: bool = False,
        motion_weights: dict[str, float] | None = None, doodle_share: float = 0.0,
        generic_share: float = 0.0, part_share: float = 0.0,
        travel: tuple[float, float] = TRAVEL, paired: bool = False,
    ):
        if size < 16:
            raise UsageError(f"clip size must be at least 16 pixels, got {size}; pass --size 128")
        if num_frames < 1:
            raise UsageError(f"clips need at least 1 frame, got {num_frames}; pass more frames")
        for name, share in (("doodle_share", doodle_share), ("generic_share", generic_share),
                            ("part_share", part_share)):
            if not 0 <= share <= 1:
                raise UsageError(f"{name} must be between 0 and 1, got {share}")
        if held_out and (doodle_share or part_share):
            raise UsageError("held-out clips are named subjects making global motions; use "
                             "doodle_share 0 and part_share 0")
        low, high = (float(x) for x in travel)
        if not 0 < low <= high < 1:
            raise UsageError(f"travel must be two fractions of the frame, 0 < low <= high < 1, "
                             f"got {list(travel)}")
        self.size, self.num_frames, self.seed, self.held_out = size, num_frames, seed, held_out
        self.doodle_share, self.generic_share = doodle_share, generic_share
        self.part_share, self.travel, self.paired = part_share, (low, high), paired
        held = set(HELD_OUT_PAIRS)
        pairs = [(s, m) for s in SUBJECTS for m in MOTIONS]
        self.pairs = [p for p in pairs if (p in held) == held_out]
        self.probabilities = None
        self.motion_probabilities = np.full(len(MOTIONS), 1 / len(MOTIONS))
        if motion_weights:
            self.probabilities = _pair_probabilities(self.pairs, motion_weights)
            self.motion_probabilities = _pair_probabilities(
                [(None, m) for m in MOTIONS], motion_weights)

    def clip(self, index: int) -> SyntheticClip:
        if not self.paired:
            return self._clip(np.random.default_rng([self.seed, index]))
        pair, second = divmod(index, 2)
        rng = np.random.default_rng([self.seed, pair])
        subject, motion = self._choose(rng)
        if second:
            opposite = OPPOSITES.get(motion)
            if opposite is None or (subject in SUBJECTS and (subject, opposite) not in
                                    self.pairs):  # nothing to mirror, or a held-out pair
                return self._clip(np.random.default_rng([self.seed, index, 2]))
            motion = opposite
        # Both clips continue from the same generator state: one drawing, one placement.
        return self.render(subject, motion, rng)

    def _clip(self, rng: np.random.Generator) -> SyntheticClip:
        return self.render(*self._choose(rng), rng)

    def _choose(self, rng: np.random.Generator) -> tuple[str, str]:
        """(subject or doodle kind, motion) of a clip, drawn from ``rng``."""
        if self.doodle_share and rng.random() < self.doodle_share:
            kind = list(DOODLES)[rng.integers(len(DOODLES))]
            motion = list(MOTIONS)[rng.choice(len(MOTIONS), p=self.motion_probabilities)]
        elif self.probabilities is None:
            kind, motion = self.pairs[rng.integers(len(self.pairs))]
        else:
            kind, motion = self.pairs[rng.choice(len(self.pairs), p=self.probabilities)]
        if self.part_share and rng.random() < self.part_share:
            motion = part_motion_for(kind, rng)
        return kind, motion

    def render(self, subject: str, motion: str, rng: np.random.Generator) -> SyntheticClip:
        """A clip of one given pair (evaluation asks for specific ones, held out or not);
        ``subject`` may also be a doodle kind."""
        if subject not in DRAWERS and subject not in DOODLE_DRAWERS:
            raise UsageError(f"unknown subject {subject!r}; use one of "
                             f"{', '.join([*SUBJECTS, *DOODLES])}")
        if motion not in MOTIONS and motion not in PART_MOTIONS:
            raise UsageError(f"unknown motion {motion!r}; use one of "
                             f"{', '.join([*MOTIONS, *PART_MOTIONS])}")
        if motion == "articulate" and subject not in ARTICULATIONS:
            raise UsageError(f"{subject!r} has no part to articulate; articulate one of "
                             f"{', '.join(ARTICULATIONS)}, or deform it "
                             f"({', '.join(DEFORMATIONS)})")
        frames = self._draw(subject, motion, rng, self.num_frames)
        noun = None
        if subject in DOODLES:
            noun = DOODLES[subject][rng.integers(len(DOODLES[subject]))]
        elif self.generic_share and rng.random() < self.generic_share:
            noun = GENERIC_NOUNS[rng.integers(len(GENERIC_NOUNS))]
        return SyntheticClip(frames, make_caption(subject, motion, rng, noun), subject, motion)

    def still(self, index: int) -> np.ndarray:
        """One random drawing, (H, W), for training the VAE. Its own random stream, so still(i)
        and clip(i) are unrelated."""
        rng = np.random.default_rng([self.seed, index, 1])
        if self.doodle_share and rng.random() < self.doodle_share:
            subject = list(DOODLES)[rng.integers(len(DOODLES))]
        else:
            subject = list(SUBJECTS)[rng.integers(len(SUBJECTS))]
        return self._draw(subject, None, rng, 1)[0]

    def __iter__(self) -> Iterator[SyntheticClip]:
        index = 0
        while True:
            yield self.clip(index)
            index += 1

    def _draw(
        self, subject: str, motion: str | None, rng: np.random.Generator, num_frames: int
    ) -> np.ndarray:
        """(F, H, W) frames of ``subject`` doing ``motion``, placed so it never leaves the frame."""
        size = self.size
        shape_seed = int(rng.integers(2**63))
        t = np.linspace(0, 1, num_frames) if num_frames > 1 else rng.random(1)
        track = _track(motion, t, size, rng, self.travel)
        # Travelling subjects face the way they go; the others face either way.
        mirror = -1.0 if motion == "move_left" else 1.0
        if motion not in TRANSLATIONS and rng.random() < 0.5:
            mirror = -1.0
        tilt = rng.uniform(-12, 12)
        # Pixels per unit: the drawing is ~2 units wide. One that stays roughly in place (a part
        # motion, a gentle travel) fills more of the frame, as a user's drawing does.
        in_place = motion in PART_MOTIONS or (motion in TRANSLATIONS and self.travel[1] < 0.2)
        scale = rng.uniform(*((0.28, 0.4) if in_place else (0.18, 0.3))) * size
        pen = rng.uniform(PEN_WIDTH[0] + 0.2, PEN_WIDTH[1] - 0.5) * size / 128

        # The strokes of every frame in unit coordinates; the shape rng restarts each frame.
        shapes = []
        for time in t:
            shape_rng = np.random.default_rng(shape_seed)
            drawer = DRAWERS.get(subject) or DOODLE_DRAWERS[subject]
            strokes = drawer(shape_rng, float(time), motion)
            shapes.append([_hand_drawn(s, shape_rng) for s in strokes])
        if motion in DEFORMATIONS:  # one law for the clip, about the drawing at rest
            law, rest = draw_params(motion, rng), bounds(shapes[0])
            shapes = [deform(strokes, motion, time, law, rest)
                      for strokes, time in zip(shapes, t, strict=True)]
        widths = np.clip(pen * rng.uniform(0.75, 1.3, len(shapes[0])), *PEN_WIDTH)  # per stroke
        bottom = max(s[:, 1].max() for s in shapes[0])

        # Pose every frame relative to the start position, shrinking the drawing until the
        # whole clip fits inside the frame; then pick the start position at random.
        margin = widths.max() / 2 + 2  # the pen, plus the line boil and antialiasing
        for _ in range(20):
            posed = [
                [self._pose(s, mirror, tilt, scale, track, i, bottom) for s in strokes]
                for i, strokes in enumerate(shapes)
            ]
            every = np.concatenate([s for strokes in posed for s in strokes])
            low, high = every.min(axis=0), every.max(axis=0)
            room = size - 2 * margin - (high - low)
            if (room >= 0).all():
                break
            scale *= 0.85
        start = margin - low + rng.uniform(0, 1, 2) * np.maximum(room, 0)

        frames = np.empty((num_frames, size, size), dtype=np.float32)
        for i, strokes in enumerate(posed):
            boil = np.random.default_rng([shape_seed, i]).normal(0, 0.3, (len(strokes), 2))
            frames[i] = _render(
                [s + start + b for s, b in zip(strokes, boil, strict=True)], widths, size
            )
        return frames

    @staticmethod
    def _pose(
        stroke: Stroke, mirror: float, tilt: float, scale: float, track: _Track, i: int,
        bottom: float,
    ) -> Stroke:
        """Unit coordinates -> pixels relative to the start position, at frame ``i``."""
        pivot = (0.0, bottom if track.pivot_bottom else 0.0)
        pts = _rotate(stroke * (mirror, 1.0), pivot, tilt + track.degrees[i])
        return pts * scale * track.scale[i] + (track.dx[i], track.dy[i])


def part_motion_for(subject: str, rng: np.random.Generator) -> str:
    """A part motion that ``subject`` (or doodle kind) can make: its own articulation half the
    time where it has one, else one of the deformations."""
    if subject in ARTICULATIONS and rng.random() < 0.5:
        return "articulate"
    return list(DEFORMATIONS)[rng.integers(len(DEFORMATIONS))]


def _pair_probabilities(pairs: list[tuple[str, str]], weights: dict[str, float]) -> np.ndarray:
    """Probability of each (subject, motion) pair: its motion's weight, normalised."""
    for motion, weight in weights.items():
        if motion not in MOTIONS:
            raise UsageError(f"unknown motion {motion!r} in motion_weights; "
                             f"use some of {', '.join(MOTIONS)}")
        if not weight >= 0:
            raise UsageError(f"motion weight of {motion} must be 0 or more, got {weight}")
    p = np.array([float(weights.get(motion, 1.0)) for _, motion in pairs])
    if p.sum() <= 0:
        raise UsageError("motion_weights leave no motion to draw; give one a weight above 0")
    return p / p.sum()


def _render(strokes: list[Stroke], widths: np.ndarray, size: int) -> np.ndarray:
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


# -- datasets on disk --------------------------------------------------------------------------

# Clip format -> the shared encoder that writes it ("png" is a folder of frame PNGs).
ENCODERS = {"gif": write_gif, "mp4": write_mp4, "webp": write_webp, "png": write_png_frames}
FORMATS = tuple(ENCODERS)
_OURS = re.compile(r"clip_\d+(\.(gif|mp4|webp))?")  # names write_dataset may replace with force
FPS = 10


def write_dataset(
    out_dir: Path,
    num_clips: int,
    seed: int,
    size: int = 128,
    num_frames: int = 10,
    fmt: str = "gif",
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``num_clips`` training clips and ``captions.jsonl`` into ``out_dir``; return it.

    Clips are ``clip_00000.gif`` (or .mp4, .webp, or a folder of PNG frames for "png"). The
    dataset is built in a hidden folder inside ``out_dir`` and moved in only when complete, so
    a failure or Ctrl-C leaves ``out_dir`` as it was. A non-empty ``out_dir`` is refused
    unless ``force``; then only earlier clips and captions are replaced, other files stay.
    ``progress(n)`` is called after each clip with the number written so far.
    """
    out_dir = Path(out_dir)
    if fmt not in FORMATS:
        raise UsageError(f"unknown clip format {fmt!r}; use one of {', '.join(FORMATS)}")
    if num_clips < 1:
        raise UsageError(f"number of clips must be at least 1, got {num_clips}; pass --clips N")
    if num_frames < 2:
        raise UsageError(f"clips need at least 2 frames, got {num_frames}; pass --frames 2 or more")
    check_writable_folder(out_dir, force, what="output folder",
                          force_fix="--force to replace its clips")
    animator = SketchAnimator(size=size, num_frames=num_frames, seed=seed)

    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with staging_folder(out_dir) as staging:
            lines = []
            for index in range(num_clips):
                clip = animator.clip(index)
                name = f"clip_{index:05d}" + ("" if fmt == "png" else f".{fmt}")
                ENCODERS[fmt](array_to_images(clip.frames), staging / name, FPS)
                lines.append(json.dumps({"file": name, "caption": clip.caption}))
                if progress is not None:
                    progress(index + 1)
            (staging / "captions.jsonl").write_text("\n".join(lines) + "\n")
            # Earlier clips go, also those this run does not replace (a larger earlier
            # dataset's clip_00042.gif must not linger uncaptioned); the user's other files
            # stay.
            for old in out_dir.iterdir():
                if _OURS.fullmatch(old.name) or old.name == "captions.jsonl":
                    remove(old)
            for new in sorted(staging.iterdir()):
                replace_atomically(new, out_dir / new.name)
    finally:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
    return out_dir
