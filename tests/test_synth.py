"""Synthetic sketch animations: determinism, vocabulary, motions that really move the ink,
held-out pairs, the dataset on disk and the ``flipsketch synth`` command."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image, ImageSequence

from flipsketch.errors import UsageError
from flipsketch.training.deform import DEFORMATIONS
from flipsketch.training.synth import (
    ARTICULATIONS,
    DOODLES,
    GENERIC_NOUNS,
    GENTLE_TRAVEL,
    HELD_OUT_PAIRS,
    LETTER_STROKES,
    LOCOMOTION,
    MOTIONS,
    OPPOSITES,
    SUBJECTS,
    SketchAnimator,
    write_dataset,
)

SIZE = 128


def ink(frame: np.ndarray) -> np.ndarray:
    return 1.0 - frame  # (H, W), 1 where the pen went


def centroid(frame: np.ndarray) -> np.ndarray:
    """(x, y) of the ink's centre of mass, in pixels."""
    w = ink(frame)
    ys, xs = np.mgrid[: frame.shape[0], : frame.shape[1]]
    return np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()


def spread(frame: np.ndarray) -> float:
    """RMS distance of the ink from its centroid: grows linearly with the drawing's size."""
    w = ink(frame)
    ys, xs = np.mgrid[: frame.shape[0], : frame.shape[1]]
    cx, cy = centroid(frame)
    return float(np.sqrt((w * ((xs - cx) ** 2 + (ys - cy) ** 2)).sum() / w.sum()))


def clockwise_degrees(a: np.ndarray, b: np.ndarray) -> float:
    """The rotation (clockwise on screen positive) that best turns frame ``a`` into ``b``,
    searched about a's ink centroid within +-40 degrees."""
    (ax, ay), (bx, by) = centroid(a), centroid(b)
    best, best_error = 0.0, np.inf
    for degrees in np.arange(-40.0, 40.5, 1.0):
        # OpenCV's positive angle turns counterclockwise on screen, hence the minus.
        m = cv2.getRotationMatrix2D((ax, ay), -degrees, 1.0)
        m[:, 2] += (bx - ax, by - ay)
        turned = cv2.warpAffine(ink(a), m, a.shape[::-1])
        error = np.abs(turned - ink(b)).sum()
        if error < best_error:
            best, best_error = degrees, error
    return best


def motion_clip(subject: str, motion: str, seed: int = 0):
    return SketchAnimator(size=SIZE, num_frames=10).render(
        subject, motion, np.random.default_rng(seed)
    )


# -- clips -------------------------------------------------------------------------------------


def test_clip_is_float_frames_with_caption():
    clip = SketchAnimator(size=96, num_frames=7, seed=3).clip(0)
    assert clip.frames.shape == (7, 96, 96)
    assert clip.frames.dtype == np.float32
    assert 0.0 <= clip.frames.min() < 0.2 and clip.frames.max() == 1.0  # black ink on white
    assert (clip.frames > 0.5).mean() > 0.8  # mostly paper
    assert clip.subject in SUBJECTS and clip.motion in MOTIONS


def test_same_seed_same_clip_other_seed_differs():
    a, b = SketchAnimator(seed=5), SketchAnimator(seed=5)
    for index in (0, 17):
        first, again = a.clip(index), b.clip(index)
        np.testing.assert_array_equal(first.frames, again.frames)
        assert first.caption == again.caption
    other = [SketchAnimator(seed=6).clip(i) for i in range(3)]
    assert any(
        c.caption != a.clip(i).caption or not np.array_equal(c.frames, a.clip(i).frames)
        for i, c in enumerate(other)
    )
    assert not np.array_equal(a.clip(0).frames, a.clip(1).frames)


def test_iteration_streams_clip_by_index():
    animator = SketchAnimator(size=32, num_frames=3, seed=2)
    stream = iter(animator)
    for index in range(3):
        np.testing.assert_array_equal(next(stream).frames, animator.clip(index).frames)


def test_consecutive_frames_always_differ():
    """GIF and WebP encoders merge identical consecutive frames, which would shorten clips."""
    animator = SketchAnimator(size=64, num_frames=10, seed=1)
    for index in range(40):
        frames = animator.clip(index).frames
        assert (np.abs(np.diff(frames, axis=0)).sum(axis=(1, 2)) > 0).all()


def test_still_is_one_deterministic_drawing():
    animator = SketchAnimator(size=64, seed=4)
    still = animator.still(3)
    assert still.shape == (64, 64) and still.dtype == np.float32
    assert (still < 0.5).sum() > 20
    np.testing.assert_array_equal(still, SketchAnimator(size=64, seed=4).still(3))
    assert not np.array_equal(still, animator.still(4))


def test_every_subject_and_motion_appears_and_held_out_pairs_never_do():
    animator = SketchAnimator(size=32, num_frames=2, seed=0)
    pairs = Counter((c.subject, c.motion) for c in (animator.clip(i) for i in range(400)))
    assert {s for s, _ in pairs} == set(SUBJECTS)
    assert {m for _, m in pairs} == set(MOTIONS)
    assert not set(pairs) & set(HELD_OUT_PAIRS)

    held = SketchAnimator(size=32, num_frames=2, seed=0, held_out=True)
    assert {(c.subject, c.motion) for c in (held.clip(i) for i in range(60))} == set(
        HELD_OUT_PAIRS
    )


def test_motion_weights_set_how_often_each_motion_is_drawn():
    only_left = SketchAnimator(size=32, num_frames=2, seed=0, motion_weights={
        m: (1.0 if m == "move_left" else 0.0) for m in MOTIONS})
    assert {only_left.clip(i).motion for i in range(40)} == {"move_left"}

    translations = {"move_left", "move_right", "move_up", "move_down"}
    favoured = SketchAnimator(size=32, num_frames=2, seed=0,
                              motion_weights={m: 4.0 for m in translations})
    share = np.mean([favoured.clip(i).motion in translations for i in range(600)])
    # 4 motions x 4 against 6 x 1 (both minus the held-out pairs): about 0.73, vs 0.4 unweighted.
    assert 0.66 < share < 0.80, share
    assert favoured.clip(7).caption == favoured.clip(7).caption  # still deterministic


@pytest.mark.parametrize("weights, message", [
    ({"moonwalk": 1.0}, "unknown motion 'moonwalk'"),
    ({"grow": -1.0}, "must be 0 or more"),
    ({m: 0.0 for m in MOTIONS}, "no motion to draw"),
])
def test_bad_motion_weights_are_refused(weights, message):
    with pytest.raises(UsageError, match=message):
        SketchAnimator(size=32, num_frames=2, motion_weights=weights)


def test_vocabulary_is_large_enough_and_held_out_covers_every_direction():
    assert len(SUBJECTS) >= 12 and len(MOTIONS) >= 10
    assert all(len(phrases) >= 3 for phrases in MOTIONS.values())
    assert {m for _, m in HELD_OUT_PAIRS} >= {"move_left", "move_right", "move_up", "move_down"}
    assert set(HELD_OUT_PAIRS) <= {(s, m) for s in SUBJECTS for m in MOTIONS}


def test_captions_follow_the_grammar():
    """caption := ("a" | "the") NOUN PHRASE, one subject and one motion phrase."""
    animator = SketchAnimator(size=32, num_frames=2, seed=9)
    for index in range(150):
        clip = animator.clip(index)
        verbs, verbing = LOCOMOTION.get(clip.subject, ("moves", "moving"))
        phrases = {p.format(verbs=verbs, verbing=verbing) for p in MOTIONS[clip.motion]}
        match = re.fullmatch(r"(a|the) (.+)", clip.caption)
        assert match, clip.caption
        noun = SUBJECTS[clip.subject]
        assert match.group(2).startswith(noun + " ")
        assert match.group(2)[len(noun) + 1 :] in phrases, clip.caption
        others = [n for s, n in SUBJECTS.items() if s != clip.subject and n not in noun]
        assert not any(re.search(rf"\b{n}\b", clip.caption) for n in others)


# -- motions move the ink the way the caption says ---------------------------------------------


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
@pytest.mark.parametrize(
    "motion, direction",
    [("move_right", (1, 0)), ("move_left", (-1, 0)), ("move_up", (0, -1)), ("move_down", (0, 1))],
)
def test_translations_move_the_ink_a_quarter_to_half_the_frame_steadily(
    subject, motion, direction
):
    frames = motion_clip(subject, motion).frames
    track = np.array([centroid(f) for f in frames])  # (F, 2)
    along = (track - track[0]) @ np.array(direction, dtype=float)
    assert 0.2 * SIZE < along[-1] < 0.5 * SIZE
    assert (np.diff(along) > 0).all()
    # Constant speed: close to a straight ramp (a flapping wing or walking legs shift the ink a
    # little, the drawing itself moves exactly linearly).
    ramp = along[-1] * np.linspace(0, 1, len(along))
    assert np.abs(along - ramp).max() < 0.06 * SIZE
    across = (track - track[0]) @ np.array(direction[::-1], dtype=float)
    assert np.abs(across).max() < 0.1 * SIZE


@pytest.mark.parametrize("subject", ["house", "car", "fish", "cat"])
@pytest.mark.parametrize("motion, sign", [("spin_cw", 1), ("spin_ccw", -1)])
def test_spins_turn_the_drawing_90_to_180_degrees_the_named_way(subject, motion, sign):
    frames = motion_clip(subject, motion, seed=1).frames
    steps = [clockwise_degrees(a, b) for a, b in zip(frames[:-1], frames[1:], strict=True)]
    assert all(np.sign(s) == sign for s in steps), steps
    assert 80 <= sign * sum(steps) <= 190


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_grow_and_shrink_scale_the_drawing_by_about_1_6(subject):
    for motion in ("grow", "shrink"):
        frames = motion_clip(subject, motion, seed=2).frames
        ratio = spread(frames[-1]) / spread(frames[0])
        area = ink(frames[-1]).sum() / ink(frames[0]).sum()
        if motion == "shrink":
            ratio, area = 1 / ratio, 1 / area
        assert 1.4 < ratio < 1.85, (motion, ratio)
        assert area > 1.2  # constant pen width: ink grows with the outline's length


@pytest.mark.parametrize("subject", ["ball", "star", "person"])
def test_bounce_goes_up_and_lands_again(subject):
    frames = motion_clip(subject, "bounce", seed=3).frames
    track = np.array([centroid(f) for f in frames])
    rise = track[0, 1] - track[:, 1]  # upwards positive
    assert rise.max() > 0.2 * SIZE
    assert abs(rise[-1]) < 0.03 * SIZE
    assert np.abs(track[:, 0] - track[0, 0]).max() < 0.05 * SIZE


@pytest.mark.parametrize("subject", ["tree", "flower", "house"])
def test_sway_tilts_one_way_then_the_other_and_back(subject):
    frames = motion_clip(subject, "sway", seed=4).frames
    steps = [clockwise_degrees(a, b) for a, b in zip(frames[:-1], frames[1:], strict=True)]
    turned = np.cumsum(steps)  # (F - 1,) degrees from the first frame
    assert turned.max() > 10 and turned.min() < -10
    assert abs(turned[-1]) < 6


def test_subject_stays_inside_the_frame_for_the_whole_clip():
    animator = SketchAnimator(size=64, num_frames=10, seed=8)
    for index in range(60):
        frames = animator.clip(index).frames
        border = np.concatenate(
            [frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1
        )
        assert border.min() > 0.95, animator.clip(index).caption


def test_travelling_subjects_face_the_way_they_go():
    """Drawn facing right, the fish is mirrored to move left: its tall tail fan trails."""
    for motion in ("move_right", "move_left"):
        w = ink(motion_clip("fish", motion, seed=5).frames[0]) > 0.5
        heights = w.sum(axis=0)  # ink pixels per column
        columns = np.nonzero(heights)[0]
        edge = (columns[-1] - columns[0]) // 6
        left = heights[columns[0] : columns[0] + edge].max()
        right = heights[columns[-1] - edge + 1 : columns[-1] + 1].max()
        assert (left > right) == (motion == "move_right")


# -- the dataset on disk -----------------------------------------------------------------------


def read_clip(path: Path) -> np.ndarray:
    """(F, H, W) uint8 frames of a written clip, read without flipsketch."""
    if path.is_dir():
        return np.stack([np.asarray(Image.open(p).convert("L")) for p in sorted(path.iterdir())])
    if path.suffix == ".mp4":
        return iio.imread(path, plugin="FFMPEG", index=None)[..., 0]
    with Image.open(path) as image:
        return np.stack([np.asarray(f.convert("L")) for f in ImageSequence.Iterator(image)])


@pytest.mark.parametrize("fmt", ["gif", "webp", "mp4", "png"])
def test_write_dataset_writes_clips_and_captions(tmp_path, fmt):
    out = write_dataset(tmp_path / "data", num_clips=3, seed=7, size=64, num_frames=6, fmt=fmt)
    lines = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    animator = SketchAnimator(size=64, num_frames=6, seed=7)
    assert [line["caption"] for line in lines] == [animator.clip(i).caption for i in range(3)]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [line["file"] for line in lines] + ["captions.jsonl"]
    )  # nothing else left behind
    for index, line in enumerate(lines):
        frames = read_clip(out / line["file"])
        assert frames.shape == (6, 64, 64)
        expected = animator.clip(index).frames * 255
        tolerance = 40 if fmt == "mp4" else 1  # lossy video: compare on average
        assert np.abs(frames - expected).mean() < tolerance


def test_write_dataset_is_deterministic(tmp_path):
    a = write_dataset(tmp_path / "a", num_clips=2, seed=1, size=32, num_frames=3)
    b = write_dataset(tmp_path / "b", num_clips=2, seed=1, size=32, num_frames=3)
    for name in ("captions.jsonl", "clip_00000.gif", "clip_00001.gif"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_write_dataset_refuses_a_non_empty_folder_without_force(tmp_path):
    out = write_dataset(tmp_path / "data", num_clips=4, seed=1, size=32, num_frames=3)
    notes = out / "notes.md"
    notes.write_text("mine")
    before = (out / "clip_00000.gif").read_bytes()
    with pytest.raises(UsageError, match="not empty.*--force"):
        write_dataset(out, num_clips=2, seed=2, size=32, num_frames=3)
    assert (out / "clip_00000.gif").read_bytes() == before

    write_dataset(out, num_clips=2, seed=2, size=32, num_frames=3, force=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "captions.jsonl", "clip_00000.gif", "clip_00001.gif", "notes.md"
    ]  # earlier clips 2 and 3 are gone, the user's own file stays
    assert notes.read_text() == "mine"
    assert len((out / "captions.jsonl").read_text().splitlines()) == 2


def test_interrupted_write_leaves_the_folder_as_it_was(tmp_path):
    def interrupt(done: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "new", num_clips=5, seed=1, size=32, progress=interrupt)
    assert not (tmp_path / "new").exists()

    out = write_dataset(tmp_path / "old", num_clips=3, seed=1, size=32, num_frames=3)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(KeyboardInterrupt):
        write_dataset(out, num_clips=5, seed=2, size=32, force=True, progress=interrupt)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no hidden leftovers


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fmt": "avi"}, "unknown clip format"),
        ({"num_clips": 0}, "at least 1"),
        ({"num_frames": 1}, "at least 2 frames"),
    ],
)
def test_write_dataset_rejects_bad_settings_before_writing(tmp_path, kwargs, message):
    settings = {"num_clips": 2, "seed": 0, "size": 32} | kwargs
    with pytest.raises(UsageError, match=message):
        write_dataset(tmp_path / "out", **settings)
    assert not (tmp_path / "out").exists()


# -- the command -------------------------------------------------------------------------------


def test_cli_writes_a_dataset_and_refuses_a_non_empty_folder(tmp_path, cli):
    out = tmp_path / "clips"
    args = ["synth", out, "--clips", "3", "--seed", "4", "--size", "32", "--frames", "4"]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert "clips/s" in done.stderr and done.stdout == ""
    lines = (out / "captions.jsonl").read_text().splitlines()
    assert [json.loads(line)["file"] for line in lines] == [f"clip_0000{i}.gif" for i in range(3)]
    assert read_clip(out / "clip_00000.gif").shape == (4, 32, 32)

    refused = cli(*args)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "--force" in refused.stderr
    assert (out / "captions.jsonl").read_text().splitlines() == lines


# -- doodles: generic drawings for a model that must keep any drawing --------------------------


@pytest.mark.parametrize("kind", sorted(DOODLES))
@pytest.mark.parametrize("motion, direction", [("move_right", (1, 0)), ("move_up", (0, -1))])
def test_every_doodle_kind_draws_ink_that_moves_as_captioned(kind, motion, direction):
    animator = SketchAnimator(size=SIZE, num_frames=10, seed=1, doodle_share=1.0)
    for index in range(3):
        clip = animator.render(kind, motion, np.random.default_rng([kind == "word", index]))
        first = ink(clip.frames[0])
        assert 30 < first.sum() < 0.5 * SIZE * SIZE  # a drawing, not a blot or an empty page
        along = (centroid(clip.frames[-1]) - centroid(clip.frames[0])) @ np.array(direction)
        assert 0.2 * SIZE < along < 0.5 * SIZE
        noun = re.fullmatch(r"(a|an|the) (\w+) .+", clip.caption).group(2)
        assert noun in DOODLES[kind], clip.caption


def test_doodle_share_mixes_doodles_and_named_subjects_deterministically():
    animator = SketchAnimator(size=32, num_frames=2, seed=4, doodle_share=0.4)
    clips = [animator.clip(i) for i in range(200)]
    doodles = sum(c.subject in DOODLES for c in clips)
    assert 50 < doodles < 110  # 40 % of 200, give or take chance
    assert {c.subject for c in clips if c.subject in DOODLES} == set(DOODLES)
    again = SketchAnimator(size=32, num_frames=2, seed=4, doodle_share=0.4)
    np.testing.assert_array_equal(again.clip(7).frames, clips[7].frames)
    assert again.clip(7).caption == clips[7].caption
    # Doodles take the configured motion weights too.
    only_up = SketchAnimator(size=32, num_frames=2, seed=4, doodle_share=1.0,
                             motion_weights={m: float(m == "move_up") for m in MOTIONS})
    assert {only_up.clip(i).motion for i in range(20)} == {"move_up"}


def test_generic_share_names_subjects_generically_without_their_verbs():
    animator = SketchAnimator(size=32, num_frames=2, seed=2, generic_share=1.0)
    for index in range(40):
        clip = animator.clip(index)
        match = re.fullmatch(r"(a|the) (\w+) (.+)", clip.caption)
        assert match and match.group(2) in GENERIC_NOUNS, clip.caption
        phrases = {p.format(verbs="moves", verbing="moving") for p in MOTIONS[clip.motion]}
        assert match.group(3) in phrases  # "a drawing moving left", never "a drawing swims"


def test_the_stick_alphabet_has_every_capital_letter_inside_its_box():
    assert sorted(LETTER_STROKES) == [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    for letter, strokes in LETTER_STROKES.items():
        points = np.concatenate(strokes)
        assert points.min() >= 0 and points[:, 0].max() <= 2.1 and points[:, 1].max() <= 3.1
        assert all(len(s) >= 2 for s in strokes), letter


def test_doodle_shares_are_checked():
    with pytest.raises(UsageError, match="doodle_share must be between 0 and 1"):
        SketchAnimator(doodle_share=1.5)
    for shares in ({"doodle_share": 0.5}, {"part_share": 0.5}):
        with pytest.raises(UsageError, match="held-out clips are named subjects making global"):
            SketchAnimator(held_out=True, **shares)
    with pytest.raises(UsageError, match="travel must be two fractions"):
        SketchAnimator(travel=(0.3, 0.1))
    with pytest.raises(UsageError, match="unknown motion 'dance'"):
        SketchAnimator().render("fish", "dance", np.random.default_rng(0))
    with pytest.raises(UsageError, match="unknown subject 'dragon'"):
        SketchAnimator().render("dragon", "grow", np.random.default_rng(0))


# -- part motions (Live-Sketch's kind): strokes move, the drawing stays ------------------------


def ink_mask(frame: np.ndarray) -> np.ndarray:
    return frame < 0.5


def moved_ink(a: np.ndarray, b: np.ndarray, tolerance: int = 2) -> np.ndarray:
    """Ink of ``b`` farther than ``tolerance`` px from any ink of ``a``: what moved."""
    near = cv2.dilate(ink_mask(a).astype(np.uint8), np.ones((2 * tolerance + 1,) * 2, np.uint8))
    return ink_mask(b) & ~near.astype(bool)


def kept_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of ``a``'s ink that ``b`` still has within 2 px."""
    return 1 - moved_ink(b, a).sum() / ink_mask(a).sum()


def part_motion_measures(frames: np.ndarray) -> dict:
    """How far the drawing travels, how much of it moves, and where the moving ink is
    relative to the drawing's centre (in units of the drawing's spread)."""
    track = np.array([centroid(f) for f in frames])
    moved = np.zeros(frames.shape[1:], bool)
    for frame in frames[1:]:
        moved |= moved_ink(frames[0], frame)
    ys, xs = np.nonzero(moved)
    cx, cy = centroid(frames[0])
    return {
        "travel": float(np.abs(track - track[0]).max()),
        # Either way round: a part may move onto ink (the arm over the head) or away from it.
        "moved": float(np.mean([max(1 - kept_share(frames[0], f), 1 - kept_share(f, frames[0]))
                                for f in frames[1:]])),
        "kept": float(min(kept_share(frames[0], f) for f in frames[1:])),
        "where": ((xs.mean() - cx) / spread(frames[0]), (ys.mean() - cy) / spread(frames[0]))
        if len(xs) else (0.0, 0.0),
    }


# subject -> where its moving part is: "side" (one end along x: the fish's tail), "above" or
# "below" the drawing's centre (y grows downwards); the bird's wing sweeps from above its back
# to below it, so its moved ink has no one side.
PARTS_AT = {"fish": "side", "bird": None, "person": "above", "cat": "below",
            "flower": "above", "tree": "above"}


@pytest.mark.parametrize("subject", sorted(ARTICULATIONS))
@pytest.mark.parametrize("seed", [0, 1])
def test_articulation_moves_the_named_part_and_keeps_the_rest_in_place(subject, seed):
    clip = motion_clip(subject, "articulate", seed=seed)
    m = part_motion_measures(clip.frames)
    assert m["travel"] < 0.06 * SIZE, m  # the drawing stays where it is
    assert m["moved"] > 0.04, m  # a part really moves
    assert m["kept"] > 0.5, m  # the rest stays
    dx, dy = m["where"]
    if PARTS_AT[subject] == "side":
        assert abs(dx) > 0.5, m
    elif PARTS_AT[subject] == "above":
        assert dy < -0.3, m
    elif PARTS_AT[subject] == "below":
        assert dy > 0.3, m
    assert any(phrase in clip.caption for phrase in ARTICULATIONS[subject]), clip.caption


@pytest.mark.parametrize("kind", sorted(DEFORMATIONS))
@pytest.mark.parametrize("subject", ["squiggle", "shape", "parts", "house", "fish"])
def test_deformations_move_strokes_within_a_drawing_that_stays(kind, subject):
    clip = motion_clip(subject, kind, seed=3)
    m = part_motion_measures(clip.frames)
    assert m["travel"] < 0.05 * SIZE, m
    assert m["moved"] > 0.03, m
    if kind != "breathe":  # breathing moves every stroke a little; the centre holds
        assert m["kept"] > 0.3, m
    if kind == "bend":  # the base stays, the top swings
        assert m["where"][1] < 0, m
    assert any(phrase in clip.caption for phrase in DEFORMATIONS[kind]), clip.caption


def test_articulation_is_refused_for_drawings_without_a_part():
    with pytest.raises(UsageError, match="no part to articulate"):
        motion_clip("ball", "articulate")


@pytest.mark.parametrize("motion, direction", [("move_right", 1), ("move_left", -1)])
def test_gentle_travel_keeps_the_drawing_roughly_in_place(motion, direction):
    animator = SketchAnimator(size=SIZE, num_frames=10, travel=GENTLE_TRAVEL)
    for seed in range(4):
        frames = animator.render("fish", motion, np.random.default_rng(seed)).frames
        along = direction * (centroid(frames[-1]) - centroid(frames[0]))[0]
        assert 0.04 * SIZE < along < 0.17 * SIZE, along


def test_part_share_mixes_part_motions_into_training_clips():
    animator = SketchAnimator(size=64, num_frames=4, seed=2, part_share=0.5, doodle_share=0.4)
    motions = Counter(animator.clip(i).motion for i in range(200))
    parts = sum(motions[m] for m in ("articulate", *DEFORMATIONS))
    assert 70 <= parts <= 130, motions
    assert all(motions[m] for m in DEFORMATIONS) and motions["articulate"]


def phrase_of(caption: str, motion: str) -> tuple[str, int, str]:
    """(phrase, its index in MOTIONS[motion], the caption before it)."""
    verbs = [*LOCOMOTION.values(), ("moves", "moving")]
    for index, phrase in enumerate(MOTIONS[motion]):
        for third, participle in verbs:
            said = phrase.format(verbs=third, verbing=participle)
            if caption.endswith(" " + said):
                return said, index, caption[: -len(said)]
    raise AssertionError(f"{caption!r} says no phrase of {motion}")


def test_paired_clips_are_one_drawing_going_opposite_ways():
    animator = SketchAnimator(size=64, num_frames=6, seed=4, paired=True, doodle_share=0.4,
                              part_share=0.3, travel=GENTLE_TRAVEL)
    opposite_pairs = 0
    for pair in range(40):
        a, b = animator.clip(2 * pair), animator.clip(2 * pair + 1)
        if a.motion not in OPPOSITES:
            continue  # nothing to mirror: the partner is another clip
        if (a.subject, OPPOSITES[a.motion]) in HELD_OUT_PAIRS:
            assert b.motion not in (OPPOSITES[a.motion],)
            continue
        opposite_pairs += 1
        assert (b.subject, b.motion) == (a.subject, OPPOSITES[a.motion])
        # The same words but the motion phrase, and the same paraphrase of it.
        assert phrase_of(a.caption, a.motion)[1:] == phrase_of(b.caption, b.motion)[1:], \
            (a.caption, b.caption)
        # Same drawing: mirrored when the pair travels sideways, else the same first frame.
        first_b = b.frames[0][:, ::-1] if a.motion in ("move_left", "move_right") else b.frames[0]
        assert ink_mask(a.frames[0]).sum() == pytest.approx(ink_mask(first_b).sum(), rel=0.15)
    assert opposite_pairs >= 10
