"""Clips: ``SketchAnimator`` draws a subject or doodle, poses it along a motion frame by frame
and captions it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from flipsketch.errors import UsageError
from flipsketch.training.deform import DEFORMATIONS, bounds, deform, draw_params
from flipsketch.training.synth.doodles import DOODLE_DRAWERS
from flipsketch.training.synth.motions import Track, motion_track
from flipsketch.training.synth.style import hand_drawn, render_strokes
from flipsketch.training.synth.subjects import DRAWERS, Stroke, rotate
from flipsketch.training.synth.vocabulary import (
    ARTICULATIONS,
    DOODLES,
    GENERIC_NOUNS,
    HELD_OUT_PAIRS,
    MOTIONS,
    OPPOSITES,
    PART_MOTIONS,
    PEN_WIDTH,
    SUBJECTS,
    TRANSLATIONS,
    TRAVEL,
    make_caption,
)


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
        track = motion_track(motion, t, size, rng, self.travel)
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
            shapes.append([hand_drawn(s, shape_rng) for s in strokes])
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
            frames[i] = render_strokes(
                [s + start + b for s, b in zip(strokes, boil, strict=True)], widths, size
            )
        return frames

    @staticmethod
    def _pose(
        stroke: Stroke, mirror: float, tilt: float, scale: float, track: Track, i: int,
        bottom: float,
    ) -> Stroke:
        """Unit coordinates -> pixels relative to the start position, at frame ``i``."""
        pivot = (0.0, bottom if track.pivot_bottom else 0.0)
        pts = rotate(stroke * (mirror, 1.0), pivot, tilt + track.degrees[i])
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
