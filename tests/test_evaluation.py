"""Offline metrics on drawings with known answers, the evaluation runs, and `flipsketch eval`."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from flipsketch.evaluation import metrics as ev
from flipsketch.evaluation import runs

from testing import shared_sketch

SIZE = 128

# A lopsided pentagon with an inner stroke: no rotational symmetry, so every angle is visible.
OUTLINE = [(-30, -20), (25, -25), (30, 10), (0, 30), (-20, 15)]


def _draw(shift=(0, 0), scale: float = 1.0, filled: bool = False, width: int = 3,
          points=OUTLINE) -> np.ndarray:
    """The test drawing (H, W) in [0, 1], 1 = white, moved by whole pixels and scaled."""
    img = Image.new("L", (SIZE, SIZE), 255)
    draw = ImageDraw.Draw(img)
    cx, cy = SIZE // 2 + shift[0], SIZE // 2 + shift[1]
    outline = [(cx + x * scale, cy + y * scale) for x, y in points]
    if filled:
        draw.polygon(outline, fill=0)
    else:
        draw.line(outline + outline[:1], fill=0, width=width, joint="curve")
        draw.line([(cx - 10 * scale, cy - 5 * scale), (cx + 10 * scale, cy - 5 * scale)],
                  fill=0, width=width)
    return np.asarray(img, dtype=np.float32) / 255


def _rotated(frame: np.ndarray, degrees: float) -> np.ndarray:
    """Pillow's rotation, counterclockwise for positive angles by its own documentation."""
    img = Image.fromarray(np.uint8(frame * 255)).rotate(
        degrees, resample=Image.Resampling.BILINEAR, fillcolor=255)
    return np.asarray(img, dtype=np.float32) / 255


def _blank() -> np.ndarray:
    return np.ones((SIZE, SIZE), np.float32)


# -- ink and fidelity ------------------------------------------------------------------------

def test_ink_mask_uses_the_fixed_midpoint_and_passes_masks_through():
    grey = np.array([[0.0, 0.49, 0.51, 1.0]], np.float32)
    assert ev.ink_mask(grey).tolist() == [[True, True, False, False]]
    assert ev.ink_mask(grey, threshold=0.3).tolist() == [[True, False, False, False]]
    mask = np.array([[True, False]])
    assert ev.ink_mask(mask) is mask


def test_identical_frames_score_one_and_a_blank_frame_zero():
    drawing = _draw()
    assert ev.stroke_fscore(drawing, drawing) == 1.0
    assert ev.stroke_fscore(drawing, _blank()) == 0.0
    assert ev.stroke_fscore(_blank(), drawing) == 0.0
    assert ev.stroke_fscore(_blank(), _blank()) == 1.0
    scores = ev.fidelity(drawing, np.stack([drawing, drawing, _blank(), drawing, _blank()]))
    assert scores == {"first": 1.0, "later_mean": 0.5, "later_compensated": 0.5}
    assert ev.fidelity(drawing, drawing[None]) == {"first": 1.0, "later_mean": None,
                                                   "later_compensated": None}


def test_fscore_counts_missing_and_extra_strokes():
    # Two 1-px lines of 41 px, far apart; the frame keeps only the first: precision 1,
    # recall 1/2, F1 = 2/3. Adding an unrelated line of 41 px halves precision instead.
    reference = Image.new("L", (SIZE, SIZE), 255)
    ImageDraw.Draw(reference).line([(20, 30), (60, 30)], fill=0)
    ImageDraw.Draw(reference).line([(20, 90), (60, 90)], fill=0)
    partial = Image.new("L", (SIZE, SIZE), 255)
    ImageDraw.Draw(partial).line([(20, 30), (60, 30)], fill=0)
    extra = reference.copy()
    ImageDraw.Draw(extra).line([(100, 20), (100, 60)], fill=0)
    ref, part, more = (np.asarray(im, np.float32) / 255 for im in (reference, partial, extra))
    assert ev.stroke_fscore(ref, part) == pytest.approx(2 / 3)
    assert ev.stroke_fscore(ref, more) == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))


def test_fscore_tolerates_wobble_within_tolerance_only():
    drawing = _draw()
    assert ev.stroke_fscore(drawing, _draw(shift=(2, 0)), tolerance=2) == 1.0
    assert ev.stroke_fscore(drawing, _draw(shift=(2, 0)), tolerance=1) < 1.0
    # Diagonal 2+2 px is 2.8 px away: outside a 2 px disc, unlike a 5x5 max-pool.
    assert ev.stroke_fscore(drawing, _draw(shift=(2, 2)), tolerance=2) < 1.0
    far = [ev.stroke_fscore(drawing, _draw(shift=(k, 0))) for k in (3, 6, 12)]
    assert far == sorted(far, reverse=True) and far[-1] < 0.5


def test_fidelity_of_a_real_sketch_against_itself_and_moved():
    from flipsketch.frames.images import images_to_array, load_sketch, to_grey_square

    grey = images_to_array([to_grey_square(load_sketch(shared_sketch("horse.png")), SIZE)])[0]
    moved = np.roll(grey, 10, axis=1)
    scores = ev.fidelity(grey, np.stack([grey, moved]))
    assert scores["first"] == 1.0
    assert scores["later_mean"] < 0.5
    assert scores["later_compensated"] == 1.0  # kept perfectly, only moved


def _real_sketch(name: str = "fish.png") -> np.ndarray:
    from flipsketch.frames.images import images_to_array, load_sketch, to_grey_square

    return images_to_array([to_grey_square(load_sketch(shared_sketch(name)), SIZE)])[0]


@pytest.mark.parametrize("shift", [(0, 5), (-17, 3), (30, -36)])
def test_compensated_fidelity_is_one_for_a_shifted_drawing(shift):
    fish = _real_sketch()
    moved = np.ones_like(fish)  # white paper, the fish drawn k px away (nothing leaves frame)
    dy, dx = shift
    ys, xs = np.nonzero(ev.ink_mask(fish))
    assert 0 <= ys.min() + dy and ys.max() + dy < SIZE and 0 <= xs.min() + dx
    assert xs.max() + dx < SIZE
    moved[ys + dy, xs + dx] = fish[ys, xs]
    assert ev.compensated_fscore(fish, moved) == 1.0
    assert ev.stroke_fscore(fish, moved) < 1.0


def test_compensated_fidelity_follows_scale_and_still_punishes_a_changed_drawing():
    import cv2

    cat = _real_sketch("cat.png")
    ys, xs = np.nonzero(ev.ink_mask(cat))
    m = cv2.getRotationMatrix2D((float(xs.mean()), float(ys.mean())), 0.0, 1.25)
    m[:, 2] += (12, -6)
    grown = cv2.warpAffine(cat, m, cat.shape[::-1], borderValue=1.0)
    assert ev.compensated_fscore(cat, grown) > 0.8 > ev.stroke_fscore(cat, grown)
    # Another drawing moved anywhere is still another drawing.
    horse = _real_sketch("horse.png")
    assert ev.compensated_fscore(cat, horse) < 0.7  # measured 0.55: thin lines align by chance
    assert ev.compensated_fscore(cat, _blank()) == 0.0
    assert ev.compensated_fscore(_blank(), _blank()) == 1.0


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match="resize"):
        ev.stroke_fscore(_draw(), np.ones((64, 64), np.float32))


# -- motion ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("shift", "expected"), [
    ((9, 0), "right"), ((-9, 0), "left"), ((0, -9), "up"), ((0, 9), "down")])
def test_shifted_drawing_gives_its_displacement_and_direction(shift, expected):
    frames = np.stack([_draw(), _draw(shift=shift)])
    centroids = ev.ink_centroids(frames)
    assert centroids[1] - centroids[0] == pytest.approx(shift)
    dx, dy = ev.translation(frames)
    assert (dx, dy) == pytest.approx(shift)
    assert ev.direction_of(dx, dy, min_move=5) == expected
    assert ev.direction_of(dx, dy, min_move=10) is None


def test_translation_fits_the_whole_track_and_skips_blank_frames():
    # Constant speed 2 px/frame to the right over 10 frames = 18 px, with a blank frame inside.
    frames = [_draw(shift=(2 * k - 9, 0)) for k in range(10)]
    frames[3] = _blank()
    assert ev.translation(np.stack(frames)) == pytest.approx((18, 0))
    # A last frame that loses the right half of the drawing pulls its centroid back to where
    # it started: last minus first sees no motion, the fitted track still goes right.
    frames[9] = np.where(np.arange(SIZE)[None, :] > SIZE // 2 + 9, 1.0, frames[9])
    centroid_x = ev.ink_centroids(np.stack(frames))[:, 0]
    assert abs(centroid_x[9] - centroid_x[0]) < 5
    assert ev.direction_of(*ev.translation(np.stack(frames)), min_move=5) == "right"
    assert ev.translation(np.stack([_blank(), _draw()])) == (0.0, 0.0)


def test_direction_picks_the_dominant_axis():
    assert ev.direction_of(10, 4, 5) == "right"
    assert ev.direction_of(-3, -12, 5) == "up"
    assert ev.direction_of(3, 4, 5) is None


def test_area_change_of_a_scaled_drawing():
    filled = np.stack([_draw(filled=True), _draw(filled=True, scale=1.5)])
    assert ev.ink_area_change(filled) == pytest.approx(2.25, rel=0.05)
    strokes = np.stack([_draw(), _draw(scale=1.5)])  # same pen width: area grows as length
    assert ev.ink_area_change(strokes) == pytest.approx(1.5, rel=0.08)
    assert ev.ink_area_change(strokes[::-1]) == pytest.approx(1 / 1.5, rel=0.08)
    assert ev.ink_area_change(np.stack([_blank(), _blank()])) == 1.0
    assert ev.ink_area_change(np.stack([_blank(), _draw()])) == math.inf


@pytest.mark.parametrize("degrees", [30, -30, 12])
def test_rotated_drawing_gives_its_angle_counterclockwise_positive(degrees):
    drawing = _draw(shift=(5, -4))  # off-centre: Pillow turns about the image centre
    turned = ev.orientation_change(np.stack([drawing, _rotated(drawing, degrees)]))
    assert turned == pytest.approx(degrees, abs=1.5)


def test_spin_of_a_symmetric_star_is_summed_frame_by_frame():
    # A five-pointed star turned 20 degrees a frame for 9 frames = 180 degrees clockwise. Its
    # 72-degree symmetry makes first-vs-last alignment meaningless; steps of 20 are not.
    star = [(30 * math.cos(math.radians(90 + 36 * k)) * (1 if k % 2 == 0 else 0.45),
             -30 * math.sin(math.radians(90 + 36 * k)) * (1 if k % 2 == 0 else 0.45))
            for k in range(10)]
    drawing = _draw(points=star)
    frames = np.stack([_rotated(drawing, -20 * k) for k in range(10)])
    assert ev.orientation_change(frames) == pytest.approx(-180, abs=6)


def test_featureless_circle_reads_as_no_rotation():
    img = Image.new("L", (SIZE, SIZE), 255)
    ImageDraw.Draw(img).ellipse([34, 34, 94, 94], outline=0, width=3)
    circle = np.asarray(img, np.float32) / 255
    frames = np.stack([circle, _rotated(circle, 20), _rotated(circle, 40)])
    assert abs(ev.orientation_change(frames)) <= 3


# -- judging the synthetic motions -----------------------------------------------------------

OPPOSITE = {"move_left": "move_right", "move_right": "move_left", "move_up": "move_down",
            "move_down": "move_up", "spin_cw": "spin_ccw", "spin_ccw": "spin_cw",
            "grow": "shrink", "shrink": "grow", "bounce": "move_down", "sway": "spin_cw"}


def test_judge_recognises_every_synthetic_motion_and_rejects_its_opposite():
    from flipsketch.training.synth import MOTIONS, SUBJECTS, SketchAnimator

    animator = SketchAnimator(size=SIZE, num_frames=10)
    subjects = list(SUBJECTS)
    assert set(OPPOSITE) == set(MOTIONS)
    for k, motion in enumerate(MOTIONS):  # a different subject for each motion
        clip = animator.render(subjects[k % len(subjects)], motion, np.random.default_rng(k))
        assert ev.judge(motion, clip.frames), (clip.subject, motion)
        assert not ev.judge(OPPOSITE[motion], clip.frames), (clip.subject, motion)
    with pytest.raises(ValueError, match="unknown motion"):
        ev.judge("teleport", clip.frames)


def test_still_frames_show_no_motion():
    from flipsketch.training.synth import MOTIONS, SketchAnimator

    still = np.repeat(SketchAnimator(size=SIZE).still(3)[None], 10, axis=0)
    assert not any(ev.judge(motion, still) for motion in MOTIONS)


@pytest.mark.parametrize(("prompt", "motion"), [
    ("the horse galloping to the left", "move_left"),
    ("A fish swims right", "move_right"),
    ("a balloon rising up", "move_up"),
    ("the cat jumps up and down", "bounce"),
    ("a windmill spinning clockwise", "spin_cw"),
    ("a tree", None),
    ("sunrises over the sea", None),  # "rises" only as a whole word
])
def test_motion_of_reads_the_caption_grammar(prompt, motion):
    assert ev.motion_of(prompt) == motion


# -- evaluation runs on the tiny random-weight model -----------------------------------------

@pytest.fixture(scope="module")
def tiny_pipe_loaded(tiny_model_dir):
    from flipsketch.api import load_pipeline

    return load_pipeline(str(tiny_model_dir), device="cpu")


def test_text_motion_run_splits_trained_and_held_out_pairs(tiny_pipe_loaded):
    from flipsketch.api import SamplerSettings
    from flipsketch.training.synth import HELD_OUT_PAIRS, SUBJECTS

    subject, motion = HELD_OUT_PAIRS[0]
    trained = next(m for m in ("move_right", "move_left") if (subject, m) not in HELD_OUT_PAIRS)
    settings = SamplerSettings(num_frames=3, num_inference_steps=2)
    calls = []
    result = runs.evaluate_text_motion(tiny_pipe_loaded, seeds=(0, 1), subjects=[subject],
                                     motions=[motion, trained], settings=settings,
                                     progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    cases = result["cases"]
    assert [(c["motion"], c["seed"], c["held_out"]) for c in cases] == [
        (motion, 0, True), (motion, 1, True), (trained, 0, False), (trained, 1, False)]
    assert all(SUBJECTS[subject] in c["prompt"] for c in cases)
    held = [c["correct"] for c in cases if c["held_out"]]
    assert result["held_out_accuracy"] == pytest.approx(np.mean(held))
    assert result["accuracy"] == pytest.approx(np.mean([c["correct"] for c in cases]))
    json.dumps(result, allow_nan=False)  # plain, JSON-safe values for the model card
    again = runs.evaluate_text_motion(tiny_pipe_loaded, seeds=(0, 1), subjects=[subject],
                                    motions=[motion, trained], settings=settings,
                                    include_held_out=False)
    assert [c["held_out"] for c in again["cases"]] == [False, False]
    assert again["held_out_accuracy"] is None
    # Seeded: the same request gives the same measurements.
    assert again["cases"] == cases[2:]


def test_unknown_subject_or_motion_is_a_usage_error(tiny_pipe_loaded):
    from flipsketch.errors import UsageError

    with pytest.raises(UsageError, match="unknown subject 'dragon'"):
        runs.evaluate_text_motion(tiny_pipe_loaded, subjects=["dragon"])
    with pytest.raises(UsageError, match="unknown motion 'move left'"):
        runs.evaluate_text_motion(tiny_pipe_loaded, motions=["move left"])


def test_caption_sensitivity_is_zero_exactly_when_the_caption_cannot_matter(tiny_pipe):
    import torch

    motions = ["move_left", "grow"]
    listening = runs.caption_sensitivity(tiny_pipe, timesteps=(900, 500), motions=motions,
                                       clips_per_motion=2, repeats=1)
    assert listening["clips"] == 4 and [r["timestep"] for r in listening["timesteps"]] == [900,
                                                                                          500]
    for row in listening["timesteps"]:
        assert row["loss_true"] > 0 and set(row["gap_by_motion"]) == set(motions)
        assert row["gap"] != 0 and row["empty_gap"] != 0  # random weights do read the text
    again = runs.caption_sensitivity(tiny_pipe, timesteps=(900, 500), motions=motions,
                                   clips_per_motion=2, repeats=1)
    assert again == listening  # seeded clips and noise

    # A text encoder whose output is zero for every caption: no caption can change the loss.
    norm = tiny_pipe.text_encoder.final_layer_norm
    with torch.no_grad():
        norm.weight.zero_()
        norm.bias.zero_()
    deaf = runs.caption_sensitivity(tiny_pipe, timesteps=(900,), motions=motions,
                                  clips_per_motion=2, repeats=1)
    [row] = deaf["timesteps"]
    assert row["gap"] == 0 and row["empty_gap"] == 0
    assert all(gap == 0 for gap in row["gap_by_motion"].values())


def test_eval_captions_checks_its_options(cli, tmp_path):
    no_model = ("--model", str(tmp_path / "no-model"))
    for args, words in [
        (("--motions", "bounce"), ["--motions", "bounce"]),
        (("--timesteps", "high"), ["--timesteps", "high"]),
        (("--timesteps", "950,-1"), ["--timesteps", "0 or more"]),
    ]:
        line = one_line_error(cli("eval", "captions", *args, *no_model))
        assert all(word in line for word in words), line


def test_eval_takes_the_default_model_as_animate_does(cli, tmp_path, monkeypatch):
    """Without --model, eval scores the model animate would use (it used to say "tiny")."""
    monkeypatch.setenv("FLIPSKETCH_MODEL", str(tmp_path / "my-default"))
    for command in ("captions", "motion"):
        line = one_line_error(cli("eval", command))
        assert f"model '{tmp_path / 'my-default'}'" in line, line


def test_ablation_returns_every_configuration(tiny_pipe_loaded):
    from flipsketch.api import SamplerSettings
    from flipsketch.frames.images import images_to_array, load_sketch, to_grey_square

    cat = images_to_array([to_grey_square(load_sketch(shared_sketch("cat.png")), 200)])[0]
    settings = SamplerSettings(num_frames=4, num_inference_steps=3)
    rows = runs.run_ablation(tiny_pipe_loaded, [("cat", cat)], ["a {subject} moving to the left"],
                           seeds=(0,), settings=settings)
    variants = ["full (lambda 0.5)", "lambda 0", "lambda 1", "w/o frame alignment",
                "w/o C^T & C^S"]
    assert [row["config"] for row in rows] == [
        *variants, "naive baseline", *(f"toolkit: {name}" for name in variants)]
    # The paper's sampler beside the paper's numbers; the toolkit's rows have none.
    assert [row["sampler"] for row in rows] == ["paper"] * 6 + ["toolkit"] * 5
    assert [row["paper_row"] is not None for row in rows] == [True] * 5 + [False] * 6
    for row in rows:
        assert set(row) == {"config", "paper_row", "sampler", "paper_s2v_consistency",
                            "paper_t2v_alignment", "s2v_consistency", "t2v_alignment",
                            "fidelity_first", "fidelity_later", "fidelity_compensated",
                            "recall_first", "motion_px", "direction_accuracy", "seconds"}
        assert row["s2v_consistency"] is None and row["t2v_alignment"] is None  # no scorers
        assert 0 <= row["fidelity_first"] <= 1 and 0 <= row["fidelity_later"] <= 1
        assert row["fidelity_later"] <= row["fidelity_compensated"] <= 1
        assert row["motion_px"] >= 0 and row["seconds"] > 0
        assert row["direction_accuracy"] in (0.0, 1.0)  # one translation prompt, one seed
    # Each configuration reaches the sampler: its clip differs from the full method's, and
    # each toolkit row from the same row sampled as the paper.
    scores = [(r["fidelity_first"], r["fidelity_later"], r["motion_px"]) for r in rows]
    assert all(score != scores[0] for score in scores[1:6])
    assert all(scores[i] != scores[6 + i] for i in range(5))


# -- the CLI (conftest's ``cli``: the entry point in this process) ---------------------------

def one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_eval_fidelity_scores_a_gif(cli, tmp_path):
    # Frame 1 is the sketch itself, then the drawing slides 6 px right per frame (30 px).
    frames = [_draw(shift=(6 * k - 15, 0)) for k in range(6)]
    sketch = tmp_path / "drawing.png"
    Image.fromarray(np.uint8(frames[0] * 255)).save(sketch)
    gif = tmp_path / "moving.gif"
    images = [Image.fromarray(np.uint8(f * 255)) for f in frames]
    images[0].save(gif, save_all=True, append_images=images[1:], duration=100, loop=0)

    result = cli("eval", "fidelity", str(sketch), str(gif), "--size", str(SIZE), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames"] == 6
    assert report["fidelity_first"] == 1.0
    assert report["per_frame"][0] == 1.0 and report["per_frame"][-1] < 0.5
    assert report["dx"] == pytest.approx(30, abs=0.5) and abs(report["dy"]) < 0.5
    assert report["direction"] == "right"
    assert "right" in result.stderr

    missing = one_line_error(cli("eval", "fidelity", str(sketch), str(tmp_path / "x.gif")))
    assert "x.gif" in missing and "does not exist" in missing
    broken = tmp_path / "broken.gif"
    broken.write_bytes(b"GIF89a not really")
    assert "broken.gif" in one_line_error(cli("eval", "fidelity", str(sketch), str(broken)))


def test_eval_ablate_checks_inputs_before_loading_the_model(cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a {subject} moving to the left\n")
    table = tmp_path / "table.csv"
    table.write_text("mine\n")
    (tmp_path / "drawings").mkdir()
    Image.fromarray(np.uint8(_draw() * 255)).save(tmp_path / "drawings" / "shape.png")
    sketches = str(tmp_path / "drawings")
    # The model does not exist, so reaching the loader would fail differently.
    no_model = ("--model", str(tmp_path / "no-model"))
    exists = one_line_error(cli("eval", "ablate", sketches, str(prompts), *no_model,
                                "--csv", str(table)))
    assert "table.csv" in exists and "--force" in exists
    assert table.read_text() == "mine\n"

    blank = tmp_path / "blank.txt"
    blank.write_text("\n# only a comment\n")
    for args, words in [
        ((sketches, str(blank)), ["blank.txt", "no prompts"]),
        ((sketches, str(tmp_path / "none.txt")), ["none.txt", "does not exist"]),
        ((sketches, str(prompts), "--seeds", "0,x"), ["--seeds", "0,x"]),
        ((str(tmp_path), str(prompts)), ["holds no images"]),  # .txt and .csv only
        ((sketches, str(prompts), "--steps", "0"), ["--steps"]),
    ]:
        line = one_line_error(cli("eval", "ablate", *args, *no_model))
        assert all(word in line for word in words), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.txt", "drawings",
                                                          "prompts.txt", "table.csv"]


def test_csv_is_written_whole_or_not_at_all(tmp_path):
    from flipsketch.evaluation.tables import write_csv

    table = tmp_path / "table.csv"
    write_csv([{"config": "full", "seconds": 1.5}], table)
    assert table.read_text() == "config,seconds\nfull,1.5\n"
    with pytest.raises(ValueError):  # a row with a stray column fails halfway through
        write_csv([{"config": "a"}, {"config": "b", "extra": 1}], table)
    assert table.read_text() == "config,seconds\nfull,1.5\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


@pytest.mark.slow
def test_eval_ablate_writes_the_table(cli, tiny_model_dir, tmp_path):
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    (sketches / "cat.png").write_bytes(shared_sketch("cat.png").read_bytes())
    (sketches / "notes.txt").write_text("not a drawing, skipped")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a {subject} moving to the left\n\nthe {subject} spinning clockwise\n")
    table = tmp_path / "table.csv"
    result = cli("eval", "ablate", str(sketches), str(prompts), "--model", str(tiny_model_dir),
                 "--seeds", "0", "--steps", "2", "--frames", "3", "--csv", str(table), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert len(rows) == 11  # 6 with the paper's sampler, 5 with the toolkit's
    assert all(row["config"] in result.stderr for row in rows)  # the Rich table
    with open(table, newline="") as file:
        written = list(csv.DictReader(file))
    assert [r["config"] for r in written] == [r["config"] for r in rows]
    assert [float(r["motion_px"]) for r in written] == pytest.approx(
        [r["motion_px"] for r in rows])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.txt", "sketches",
                                                          "table.csv"]


def test_stroke_recall_counts_the_input_pixels_drawn_within_one_pixel():
    drawing = _draw(width=1)
    assert ev.stroke_recall(drawing, drawing) == 1.0
    assert ev.stroke_recall(drawing, _draw(width=1, shift=(1, 0))) == 1.0  # 1 px away counts
    assert ev.stroke_recall(drawing, _draw(width=1, shift=(3, 0))) < 0.5
    assert ev.stroke_recall(drawing, _blank()) == 0.0
    assert ev.stroke_recall(_blank(), drawing) == 1.0
    # A lost detail: half of the ink gone means half the recall, whatever else is drawn.
    half = drawing.copy()
    ys, xs = np.nonzero(ev.ink_mask(drawing))
    lost = xs < np.median(xs)
    half[ys[lost], xs[lost]] = 1.0
    assert ev.stroke_recall(drawing, half) == pytest.approx(1 - lost.mean(), abs=0.05)
