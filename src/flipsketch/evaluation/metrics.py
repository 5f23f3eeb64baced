"""Metrics measured on the ink: stroke fidelity and motion, without CLIP.

The paper scores animations with CLIP image similarity (sketch-to-video consistency) and
X-CLIP video-text similarity (text-to-video alignment). Both need downloaded weights, so this
module measures the same two things directly on the ink:

- fidelity: how many of a frame's strokes lie on the input sketch's strokes and vice versa
  (a stroke F-score with a small pixel tolerance), for frame 1 and for the later frames;
- motion: where the ink goes (centroid track, area, orientation), judged against the motion
  the prompt names, using the vocabulary of the synthetic training data
  (``flipsketch.training.synth``).

Frames are (F, H, W) float arrays in [0, 1], 1 = white paper, ink dark. Coordinates are
pixels with x to the right and y down; angles are degrees, counterclockwise (as seen on
screen) positive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from flipsketch.frames.images import INK_THRESHOLD

if TYPE_CHECKING:
    pass



# -- ink -------------------------------------------------------------------------------------

def ink_mask(frame: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Grey frame(s) (..., H, W) -> bool mask of ink; boolean input is taken as a mask already.

    ``threshold`` defaults to ``INK_THRESHOLD`` (a fixed 0.5, not Otsu: see its comment).
    """
    frame = np.asarray(frame)
    if frame.dtype == bool:
        return frame
    return frame < (INK_THRESHOLD if threshold is None else threshold)


def _dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Grow ink (..., H, W) by a disc of ``radius`` px: a pixel is set if ink lies that close.

    A disc of shifted ORs rather than a square max-pool, so "within 2 px" means Euclidean
    distance and a diagonal neighbour at 2.8 px does not count.
    """
    out = mask.copy()
    h, w = mask.shape[-2:]
    r = int(math.floor(radius))
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if (dy == 0 and dx == 0) or dy * dy + dx * dx > radius * radius:
                continue
            # out[y, x] |= mask[y - dy, x - dx] wherever both lie inside the frame
            out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] |= (
                mask[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
            )
    return out


def _fscores(reference: np.ndarray, frames: np.ndarray, tolerance: float,
             near_frames: np.ndarray | None = None) -> np.ndarray:
    """Stroke F-score of each frame's ink (F, H, W) against the reference ink (H, W) -> (F,).

    ``near_frames``: the frames' ink dilated by ``tolerance``, when the caller scores the same
    frames against many references and has it already."""
    if reference.shape != frames.shape[-2:]:
        raise ValueError(f"reference is {reference.shape} but frames are {frames.shape[-2:]}; "
                         "resize one to the other first")
    n_ref = reference.sum()
    n_out = frames.sum(axis=(-2, -1))  # (F,)
    near_ref = _dilate(reference, tolerance)  # (H, W)
    near_out = _dilate(frames, tolerance) if near_frames is None else near_frames  # (F, H, W)
    precision = (frames & near_ref).sum(axis=(-2, -1)) / np.maximum(n_out, 1)
    recall = (reference & near_out).sum(axis=(-2, -1)) / max(n_ref, 1)
    total = precision + recall
    scores = np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)
    # Nothing drawn where nothing was asked for is a perfect match; ink on one side only is not.
    scores = np.where((n_out == 0) & (n_ref == 0), 1.0, scores)
    return np.where((n_out == 0) != (n_ref == 0), 0.0, scores)


def stroke_fscore(reference: np.ndarray, frame: np.ndarray, tolerance: float = 2) -> float:
    """F1 of ink matching within ``tolerance`` px: 1 = the same drawing, 0 = nothing in common.

    Precision is the fraction of the frame's ink within ``tolerance`` of reference ink (no
    invented strokes), recall the fraction of reference ink within ``tolerance`` of the
    frame's ink (no lost strokes). The tolerance forgives the pixel-level wobble a diffusion
    model adds to a line without forgiving a moved or missing one. Both empty -> 1.0, exactly
    one empty -> 0.0.
    """
    frame = ink_mask(frame)
    return float(_fscores(ink_mask(reference), frame[None], tolerance)[0])


def stroke_recall(reference: np.ndarray, frame: np.ndarray, tolerance: float = 1) -> float:
    """Share of the reference's ink pixels within ``tolerance`` px of the frame's ink: are the
    small details (an eye, a gill line) still drawn? An empty reference gives 1."""
    ref, out = ink_mask(reference), ink_mask(frame)
    if not ref.any():
        return 1.0
    return float((ref & _dilate(out, tolerance)).sum() / ref.sum())


# Scale changes of the input tried by the motion-compensated F-score (grow/shrink clips change
# size by up to 1.7x over a clip, so by a few percent per frame and much more in total).
COMPENSATION_SCALES = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4, 1.6)


def _scaled(mask: np.ndarray, scale: float) -> np.ndarray:
    """Ink mask (H, W) scaled by ``scale`` about its ink centroid, same frame size."""
    if scale == 1.0 or not mask.any():
        return mask
    import cv2

    ys, xs = np.nonzero(mask)
    centre = (float(xs.mean()), float(ys.mean()))
    m = cv2.getRotationMatrix2D(centre, 0.0, scale)
    warped = cv2.warpAffine(mask.astype(np.uint8) * 255, m, mask.shape[::-1],
                            flags=cv2.INTER_LINEAR)
    return warped >= 128


def _shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx) px; ink moved out of the frame is gone, new area is empty."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = (
        mask[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)])
    return out


def _best_shifts(reference: np.ndarray, target: np.ndarray, count: int) -> list[tuple[int, int]]:
    """The ``count`` shifts (dy, dx) of ``reference`` ink that overlap ``target`` most, by
    FFT cross-correlation over every shift (zero-padded, so nothing wraps around)."""
    h, w = reference.shape
    size = (2 * h, 2 * w)
    corr = np.fft.irfft2(np.fft.rfft2(target.astype(np.float32), size)
                         * np.conj(np.fft.rfft2(reference.astype(np.float32), size)), size)
    # corr[dy mod 2h, dx mod 2w] = sum_p reference[p] * target[p + (dy, dx)]
    best = np.argpartition(corr.ravel(), -count)[-count:]
    dys, dxs = np.unravel_index(best, size)
    return [(int(dy - 2 * h if dy >= h else dy), int(dx - 2 * w if dx >= w else dx))
            for dy, dx in zip(dys, dxs, strict=True)]


def compensated_fscore(reference: np.ndarray, frame: np.ndarray, tolerance: float = 2,
                       scales: Sequence[float] = COMPENSATION_SCALES,
                       candidates: int = 8) -> float:
    """The best stroke F-score of ``frame`` against the input moved and resized: identity kept
    through motion.

    The plain F-score compares a frame with the input where the input was drawn, so a drawing
    that moves away scores 0 however perfectly it is kept. Here the input's ink is scaled
    (``scales``, about its centroid) and shifted to each of the ``candidates`` positions where
    it overlaps the frame's ink most (found by cross-correlation over every shift), and the
    best F-score counts. A frame that is the input shifted by any amount scores 1.
    """
    ref, out = ink_mask(reference), ink_mask(frame)
    if not ref.any() or not out.any():
        return float(ref.any() == out.any())
    near_out = _dilate(out, tolerance)
    best = 0.0
    for scale in scales:
        moved = _scaled(ref, scale)
        for dy, dx in _best_shifts(moved, near_out, candidates):
            score = _fscores(_shifted(moved, dy, dx), out[None], tolerance,
                             near_frames=near_out[None])[0]
            best = max(best, float(score))
    return best


def fidelity(reference: np.ndarray, frames: np.ndarray, tolerance: float = 2) -> dict:
    """Stroke F-score of frame 1 and the mean over frames 2..F against the sketch (H, W).

    Frame 1 is where the sketch is reproduced; the later frames are where fidelity competes
    with motion (the paper's sketch-to-video consistency). ``later_compensated`` scores the
    later frames against the input moved and resized to fit each (``compensated_fscore``):
    the plain score falls with any motion, the compensated one only when the drawing changes.
    A one-frame clip has no later frames and reports both as None.
    """
    scores = _fscores(ink_mask(reference), ink_mask(frames), tolerance)  # (F,)
    later = float(scores[1:].mean()) if len(scores) > 1 else None
    compensated = None
    if len(frames) > 1:
        compensated = float(np.mean([compensated_fscore(reference, f, tolerance)
                                     for f in frames[1:]]))
    return {"first": float(scores[0]), "later_mean": later, "later_compensated": compensated}


# -- motion ----------------------------------------------------------------------------------

def ink_centroids(frames: np.ndarray) -> np.ndarray:
    """(F, H, W) -> (F, 2) mean (x, y) of each frame's ink in pixels; NaN for a blank frame."""
    masks = ink_mask(frames)
    counts = masks.sum(axis=(1, 2)).astype(np.float64)  # (F,)
    ys, xs = np.indices(masks.shape[1:])  # (H, W) each
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (masks * xs).sum(axis=(1, 2)) / counts
        cy = (masks * ys).sum(axis=(1, 2)) / counts
    return np.stack([cx, cy], axis=1)  # (F, 2)


def translation(frames: np.ndarray) -> tuple[float, float]:
    """(dx, dy) px the ink travels over the clip: the least-squares slope of the centroid
    track times (F - 1).

    A fitted slope rather than last-minus-first centroid because a single odd end frame (a
    stroke that appears or vanishes) would otherwise decide the direction; for a clip moving
    at constant speed the two agree exactly. Blank frames are skipped; fewer than two inked
    frames means no measurable motion, (0.0, 0.0).
    """
    centroids = ink_centroids(frames)
    inked = np.isfinite(centroids[:, 0])
    if inked.sum() < 2:
        return 0.0, 0.0
    t = np.arange(len(frames))[inked]
    slope = np.polyfit(t, centroids[inked], 1)[0]  # (2,): px per frame along x and y
    dx, dy = slope * (len(frames) - 1)
    return float(dx), float(dy)


def direction_of(dx: float, dy: float, min_move: float) -> str | None:
    """The dominant direction of a displacement, or None when it is shorter than ``min_move``."""
    if max(abs(dx), abs(dy)) < min_move:
        return None
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def ink_area_change(frames: np.ndarray) -> float:
    """Ink pixels of the last frame over those of the first.

    Scaling a filled shape by s multiplies this by s**2; scaling a line drawing whose strokes
    keep their width, by about s. A blank first frame gives inf (or 1.0 if the last is blank
    too).
    """
    areas = ink_mask(frames).sum(axis=(1, 2))
    first, last = int(areas[0]), int(areas[-1])
    if first == 0:
        return 1.0 if last == 0 else math.inf
    return last / first


class _Ink:
    """One frame's ink prepared for the rotation search: its points about the centroid,
    thinned evenly to at most ``limit``, and how far every pixel lies from it."""

    def __init__(self, mask: np.ndarray, limit: int = 300, reach: int = 6) -> None:
        ys, xs = np.nonzero(mask)
        points = np.stack([xs, ys], axis=1).astype(np.float64)  # (n, 2) x, y
        self.centre = points.mean(axis=0)
        self.points = points[:: max(1, len(points) // limit)] - self.centre
        # Distance to the nearest ink in whole px, capped at ``reach`` so that a stray stroke
        # far away cannot dominate a mean; grown disc by disc, which is cheap at this range.
        self.distance = np.full(mask.shape, float(reach))
        for radius in range(reach - 1, -1, -1):
            self.distance[_dilate(mask, radius)] = radius

    def chamfer(self, points: np.ndarray) -> np.ndarray:
        """Mean distance (...,) from point sets (..., n, 2), relative to this ink's centroid,
        to this ink; points off the frame count as far away."""
        h, w = self.distance.shape
        px = np.rint(points[..., 0] + self.centre[0]).astype(int)
        py = np.rint(points[..., 1] + self.centre[1]).astype(int)
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        d = self.distance[py.clip(0, h - 1), px.clip(0, w - 1)]
        return np.where(inside, d, self.distance.max()).mean(axis=-1)


def _rotate(points: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Centred (x, y) points (..., n, 2) -> (..., A, n, 2) turned counterclockwise on screen
    (y points down) by each of ``degrees`` (A,)."""
    theta = np.deg2rad(degrees)[:, None]  # (A, 1)
    cos, sin = np.cos(theta), np.sin(theta)
    x, y = points[..., None, :, 0], points[..., None, :, 1]  # (..., 1, n)
    return np.stack([x * cos + y * sin, -x * sin + y * cos], axis=-1)


def _shifts(reach: float, step: float) -> np.ndarray:
    """(S, 2) offsets on a grid within +-``reach`` px."""
    ticks = np.arange(-reach, reach + 1e-6, step)
    return np.stack(np.meshgrid(ticks, ticks), axis=-1).reshape(-1, 2)


def _turn_cost(a: _Ink, b: _Ink, angles: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """How badly turning ink ``a`` by each angle fits ink ``b`` -> (A,) mean px, symmetric.

    a's ink is turned about its centroid, placed on b's centroid plus the best of ``shifts``
    (a stroke drawn thicker on one side moves the centroid a few px without moving the
    drawing), and its chamfer distance to b taken: it degrades smoothly where counting exact
    hits would jump. b's ink goes back onto a by the inverse move, so neither extra nor
    missing strokes fit for free.
    """
    shifts = shifts[:, None, :]  # (S, 1, 2)
    forward = b.chamfer(_rotate(a.points, angles)[None] + shifts[:, None])  # (S, A)
    back = a.chamfer(_rotate(b.points - shifts, -angles))  # (S, A)
    return ((forward + back) / 2).min(axis=0)


def _plateau_centre(angles: np.ndarray, cost: np.ndarray, slack: float = 0.02) -> float:
    """The middle of the run of angles around the minimum whose cost is within ``slack`` px:
    rounding to pixels makes neighbouring angles fit equally well, and taking the first of
    them would bias every step the same way."""
    best = int(cost.argmin())
    lo, hi = best, best
    while lo > 0 and cost[lo - 1] <= cost[best] + slack:
        lo -= 1
    while hi < len(cost) - 1 and cost[hi + 1] <= cost[best] + slack:
        hi += 1
    return float(angles[lo] + angles[hi]) / 2


# A drawing whose best and worst angles fit within this many px of each other has no visible
# orientation (a plain circle): its rotation reads as 0 instead of as raster noise.
FEATURELESS = 0.25


def _rotation_between(a: _Ink, b: _Ink, max_angle: float) -> float:
    """Counterclockwise degrees in [-max_angle, max_angle] that best turn ink ``a`` into ``b``:
    a coarse sweep (4-degree, 1.5 px steps), then 0.5-degree, 1 px steps around its best."""
    coarse = np.arange(-max_angle, max_angle + 1e-6, 4.0)
    cost = _turn_cost(a, b, coarse, _shifts(3, 1.5))
    if np.ptp(cost) < FEATURELESS:
        return 0.0
    guess = _plateau_centre(coarse, cost)
    fine = np.arange(guess - 4, guess + 4 + 1e-6, 0.5)
    return _plateau_centre(fine, _turn_cost(a, b, fine, _shifts(3, 1)))


def orientation_track(frames: np.ndarray, max_step: float = 45) -> np.ndarray:
    """(F,) signed degrees each frame has turned since frame 1, counterclockwise positive.

    The sum of frame-to-frame rotations, each found by searching the angle that best aligns
    one frame's ink with the next about their centroids (so translation and mild scaling do
    not matter). Principal axes would be simpler but have no sign for symmetric shapes (a
    star or a flower has no principal axis at all), and aligning every frame to frame 1
    directly cannot tell a 72-degree turn of a five-pointed star from none. Small steps can:
    a spin of up to ``max_step`` degrees per frame is measured unambiguously for any shape
    whose symmetry period exceeds twice that. A blank frame repeats the previous angle.
    """
    track = np.zeros(len(frames))
    previous = None  # the last inked frame's _Ink
    for k, mask in enumerate(ink_mask(frames)):
        step = 0.0
        if mask.any():
            ink = _Ink(mask)
            if previous is not None:
                step = _rotation_between(previous, ink, max_step)
            previous = ink
        track[k] = (track[k - 1] if k else 0.0) + step
    return track


def orientation_change(frames: np.ndarray) -> float:
    """Signed degrees the drawing turns over the clip, counterclockwise positive (see
    ``orientation_track`` for how)."""
    return float(orientation_track(frames)[-1])


# -- judging motions -------------------------------------------------------------------------
# What counts as having done a motion of ``flipsketch.training.synth.MOTIONS``. The bars sit
# well under the training clips' own motions (synth.TRAVEL, SPIN_DEGREES, GROW_FACTOR,
# BOUNCE_HEIGHT, SWAY_DEGREES), so a model is credited for the right kind of motion in the
# right direction even when it does less of it than the data; still frames pass none of them.
# Fractions of the frame: a translation's travel (the training clips travel 6-15 %, as
# Live-Sketch's drawings stay roughly in place) and a bounce's rise (25-35 % in training).
MIN_TRAVEL = 0.04
MIN_RISE = 0.1
MIN_TURN = 30.0  # degrees, spins
MIN_SWAY = 6.0  # degrees to each side
MIN_SCALE = 1.2  # ink area ratio, grow (and 1 / MIN_SCALE for shrink)


def judge_measured(motion: str, frames: np.ndarray) -> tuple[bool, dict]:
    """Whether ``frames`` show ``motion``, and the measurements that decided it."""
    from flipsketch.training.synth import MOTIONS, TRANSLATIONS

    width = frames.shape[-1]
    if motion in TRANSLATIONS:
        dx, dy = translation(frames)
        wanted = direction_of(*TRANSLATIONS[motion], min_move=0.5)  # its unit vector's name
        seen = direction_of(dx, dy, min_move=MIN_TRAVEL * width)
        return seen == wanted, {"dx": dx, "dy": dy, "direction": seen}
    if motion in ("grow", "shrink"):
        ratio = ink_area_change(frames)
        ok = ratio >= MIN_SCALE if motion == "grow" else ratio <= 1 / MIN_SCALE
        return bool(ok), {"area_ratio": ratio if math.isfinite(ratio) else None}  # JSON-safe
    if motion in ("spin_cw", "spin_ccw"):
        degrees = orientation_change(frames)
        ok = degrees <= -MIN_TURN if motion == "spin_cw" else degrees >= MIN_TURN
        return bool(ok), {"degrees": degrees}
    if motion == "bounce":
        # Up and back down: the ink rises by MIN_RISE of the height and falls back at least
        # halfway by the last frame (the training clips land where they started).
        y = ink_centroids(frames)[:, 1]
        y = y[np.isfinite(y)]
        rise = float(y[0] - y.min()) if len(y) else 0.0
        back = float(y[-1] - y.min()) if len(y) else 0.0
        ok = rise >= MIN_RISE * frames.shape[-2] and back >= rise / 2
        return bool(ok), {"rise": rise, "fall": back}
    if motion == "sway":
        track = orientation_track(frames)
        ok = track.max() >= MIN_SWAY and track.min() <= -MIN_SWAY
        return bool(ok), {"max_degrees": float(track.max()), "min_degrees": float(track.min())}
    raise ValueError(f"unknown motion {motion!r}; use one of {', '.join(MOTIONS)}")


def judge(prompt_motion: str, frames: np.ndarray) -> bool:
    """Whether ``frames`` (F, H, W) show the motion ``prompt_motion``, a key of
    ``flipsketch.training.synth.MOTIONS`` ("move_left", "spin_cw", "grow", "bounce", ...)."""
    return judge_measured(prompt_motion, frames)[0]


def motion_of(prompt: str) -> str | None:
    """The synth motion a free-text prompt asks for, by the caption grammar's phrases, or None.

    "the horse galloping to the left" matches "{verbing} to the left" (move_left); a prompt
    using none of the phrases is not judged. The longest matching phrase wins.
    """
    from flipsketch.training.synth import MOTIONS

    best, best_length = None, 0
    for motion, phrases in MOTIONS.items():
        for phrase in phrases:
            pattern = re.escape(phrase).replace(r"\{verbs\}", r"\w+").replace(
                r"\{verbing\}", r"\w+")
            found = re.search(rf"\b{pattern}\b", prompt.lower())
            if found and len(found.group()) > best_length:
                best, best_length = motion, len(found.group())
    return best
