"""Best-of-K: samples ranked by sketch fidelity, the J best written, never none."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from flipsketch.api import Animation, SamplerSettings, animate, load_pipeline
from flipsketch.evaluation.ranking import fidelity_scores, rank

from testing import assert_one_line_error, shared_sketch

FAST = ["--steps", "3", "--frames", "3", "--size", "32"]


def drawing() -> Image.Image:
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).rectangle([16, 20, 40, 36], outline=0, width=2)
    return image


def clip_of(frames: list[np.ndarray], seed: int) -> Animation:
    return Animation(frames=np.stack(frames).astype(np.float32), seed=seed, prompt="a box")


def test_a_kept_drawing_outranks_a_lost_one_even_when_it_moves():
    sketch = np.asarray(drawing(), dtype=np.float32) / 255
    moved = [sketch, np.roll(sketch, 5, axis=1), np.roll(sketch, 10, axis=1)]
    line = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(line).line([(8, 56), (56, 8)], fill=0, width=2)
    line = np.asarray(line, dtype=np.float32) / 255
    lost = [sketch, line, line]  # the box became a diagonal stroke
    ranked = rank(drawing(), [clip_of(lost, 0), clip_of(moved, 1)])
    assert [r.animation.seed for r in ranked] == [1, 0]
    assert ranked[0].score > 0.99 and ranked[1].score < 0.5
    assert [r.rank for r in ranked] == [1, 2]
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)


def test_ties_keep_the_sampling_order():
    sketch = np.asarray(drawing(), dtype=np.float32) / 255
    same = [clip_of([sketch, sketch], seed) for seed in (5, 3, 4)]
    assert [r.animation.seed for r in rank(drawing(), same)] == [5, 3, 4]


@pytest.mark.slow  # samples and ranks several clips
def test_keep_writes_the_best_j_and_reports_every_score(cli, tmp_path):
    sketch = shared_sketch("cat.png")
    result = cli("animate", str(sketch), "a cat walking to the right", "--model", "tiny",
                 "--samples", "3", "--keep", "2", "--seed", "4", "-o", str(tmp_path / "cat.gif"),
                 "--json", *FAST)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    ranking = summary["ranking"]
    assert ranking["by"] == "fidelity_compensated"
    assert sorted(s["seed"] for s in ranking["samples"]) == [4, 5, 6]
    assert [s["rank"] for s in ranking["samples"]] == [1, 2, 3]
    scores = [s["score"] for s in ranking["samples"]]
    assert scores == sorted(scores, reverse=True)
    assert [s["output"] for s in ranking["samples"]] == [
        str(tmp_path / "cat-1.gif"), str(tmp_path / "cat-2.gif"), None]
    assert summary["seeds"] == [s["seed"] for s in ranking["samples"][:2]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat-1.gif", "cat-2.gif"]
    assert "kept the best 2 of 3 samples" in result.stderr

    # The scores are the samples' own: the same seeds through the Python API score the same.
    pipe = load_pipeline("tiny", device="cpu")
    clips = animate(pipe, "a cat walking to the right", sketch,
                    SamplerSettings(num_frames=3, num_inference_steps=3, seed=4, samples=3))
    own = dict(zip((c.seed for c in clips), fidelity_scores(Image.open(sketch), clips),
                   strict=True))
    for sample in ranking["samples"]:
        assert abs(sample["score"] - own[sample["seed"]]) < 1e-6


def test_samples_that_all_lose_the_drawing_are_still_ranked_and_returned():
    """Every sample scores 0 (blank later frames): ranking still orders all of them, so the
    caller writes its J best; nothing is filtered out."""
    sketch = np.asarray(drawing(), dtype=np.float32) / 255
    blank = np.ones_like(sketch)
    lost = [clip_of([sketch, blank, blank], seed) for seed in (3, 1, 2)]
    ranked = rank(drawing(), lost)
    assert [r.score for r in ranked] == [0.0, 0.0, 0.0]
    assert [r.animation.seed for r in ranked] == [3, 1, 2] and len(ranked) == 3


def test_keep_writes_j_outputs_from_a_model_that_keeps_little(cli, tiny_model_dir, tmp_path):
    """A random-weight model keeps little of the drawing; the J best are written anyway."""
    result = cli("animate", str(shared_sketch("cat.png")), "a cat", "--model",
                 str(tiny_model_dir), "--samples", "2", "--keep", "1", "-o",
                 str(tmp_path / "cat.gif"), "--json", *FAST)
    assert result.returncode == 0, result.stderr
    ranking = json.loads(result.stdout)["ranking"]
    assert len(ranking["samples"]) == 2 and ranking["samples"][0]["output"] is not None
    assert [p.name for p in tmp_path.iterdir()] == ["cat-1.gif"]  # the best, as --help says


def test_keep_and_rank_model_refuse_what_cannot_work(cli, tiny_model_dir, tmp_path):
    base = ["animate", str(shared_sketch("cat.png")), "a cat", "--model", str(tiny_model_dir),
            "-o", str(tmp_path / "cat.gif"), *FAST]
    assert_one_line_error(cli(*base, "--samples", "2", "--keep", "3"), "--keep", "--samples")
    assert_one_line_error(cli(*base, "--keep", "0"), "--keep")
    assert_one_line_error(cli(*base, "--rank-model", "x/y"), "--rank-model", "--keep")
    generate = cli("generate", "a cat", "--keep", "1")  # nothing to rank against
    assert generate.returncode == 2 and "--keep" in generate.stderr
    assert list(tmp_path.iterdir()) == []
