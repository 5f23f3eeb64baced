"""The embedded tiny model, as shipped inside the package: loads offline, animates, moves."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from flipsketch.api import SamplerSettings, animate, load_pipeline, prepare_sketch
from flipsketch.backbone import TINY_MODEL_DIR
from flipsketch.evaluation import fidelity, translation

from conftest import read_animation, shared_sketch


@pytest.fixture(scope="module")
def tiny():
    return load_pipeline("tiny", device="cpu")


def test_ships_inside_the_package_as_small_safetensors():
    weights = list(TINY_MODEL_DIR.rglob("*.safetensors"))
    assert {w.parent.name for w in weights} == {"unet", "vae", "text_encoder"}
    assert not list(TINY_MODEL_DIR.rglob("*.bin"))
    total = sum(f.stat().st_size for f in TINY_MODEL_DIR.rglob("*") if f.is_file())
    assert total <= 40 * 2**20
    assert (TINY_MODEL_DIR / "README.md").is_file()  # the model card


def test_loads_offline_at_its_native_resolution(tiny):
    assert tiny.model_resolution == 128
    assert tiny.scheduler.config.prediction_type == "v_prediction"
    assert tiny.unet.dtype == torch.float32  # fp16 on disk, fp32 on the CPU


def test_animate_works_out_of_the_box_on_the_default_model(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "flipsketch", "animate", str(shared_sketch("fish.png")),
         "a fish swimming to the right", "-o", str(tmp_path / "fish.gif"), "--json"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "tiny"
    frames = read_animation(tmp_path / "fish.gif")
    assert frames.shape[:3] == (10, 512, 512)


def test_frame_one_keeps_the_input_sketch(tiny):
    sketch = prepare_sketch(shared_sketch("cat.png"), tiny.model_resolution).numpy()
    settings = SamplerSettings(num_inference_steps=25, samples=2)
    clips = animate(tiny, "a cat walking to the right", shared_sketch("cat.png"), settings)
    scores = [fidelity(sketch, clip.frames)["first"] for clip in clips]
    assert np.mean(scores) >= 0.7, scores


@pytest.mark.xfail(strict=True, reason="the shipped model has not learned the prompted "
                   "direction yet (4,900 CPU steps: `flipsketch eval captions` shows it ignores "
                   "direction words; see its model card); remove this mark once a longer run "
                   "passes")
def test_a_ball_moving_right_moves_right_more_than_one_moving_left(tiny):
    """A small real quality check of the prompt's direction, text only, four seeds each."""
    settings = SamplerSettings(samples=4, seed=100)
    dx = {}
    for way in ("right", "left"):
        clips = animate(tiny, f"a ball moving to the {way}", None, settings)
        dx[way] = float(np.mean([translation(clip.frames)[0] for clip in clips]))
    assert dx["right"] > 0, dx
    assert dx["right"] > dx["left"], dx
