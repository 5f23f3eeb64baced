"""The embedded tiny model, as shipped inside the package: its architecture, offline loading,
animation out of the box and frame 1. How well it moves as prompted is a model-quality number,
measured by scripts/evaluate_tiny.sh and recorded in its model card, not a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from flipsketch.api import SamplerSettings, animate, load_pipeline, prepare_sketch
from flipsketch.evaluation.metrics import fidelity
from flipsketch.models.presets import TINY_DIR

from conftest import read_animation, shared_sketch


@pytest.fixture(scope="module")
def tiny():
    return load_pipeline("tiny", device="cpu")


def test_ships_inside_the_package_as_small_safetensors():
    weights = list(TINY_DIR.rglob("*.safetensors"))
    assert {w.parent.name for w in weights} == {"unet", "vae", "text_encoder"}
    assert not list(TINY_DIR.rglob("*.bin"))
    total = sum(f.stat().st_size for f in TINY_DIR.rglob("*") if f.is_file())
    assert total <= 40 * 2**20
    assert (TINY_DIR / "README.md").is_file()  # the model card


def test_loads_offline_at_its_native_resolution(tiny):
    assert tiny.model_resolution == 128
    assert tiny.scheduler.config.prediction_type == "v_prediction"
    assert tiny.unet.dtype == torch.float32  # fp16 on disk, fp32 on the CPU


def test_has_attention_at_full_latent_resolution_and_frame_positions(tiny):
    from flipsketch.models.frame_positions import temporal_blocks

    config = tiny.unet.config
    assert config.down_block_types[0] == "CrossAttnDownBlock3D"  # 16 x 16 latents
    assert config.down_block_types[-1] == "DownBlock3D"  # only the lowest level lacks it
    assert config.frame_positions >= 10
    blocks = temporal_blocks(tiny.unet)
    assert blocks and all(block.pos_embed is not None for block in blocks)


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
    assert np.mean(scores) >= 0.8, scores
