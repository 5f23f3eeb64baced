"""The same pictures (issue 22, item 4): a run with every stage of the default sampler on the
shipped model gives the frames recorded before any speed-up.

``tests/data/default_run_frames.npz`` holds the raw frames (float16) of
``animate(tiny, "a fish swimming to the right", fish, SamplerSettings(num_inference_steps=8,
num_frames=4))``: inversion, alignment, composition and frame 1 kept, as a default run, only
shorter. A change that reorders arithmetic (a fused call, another batch shape, other threads)
may move a pixel by float rounding, so the frames must agree within 2e-3 of the 0..1 range
(float16 storage is 5e-4, rounding across thread counts 1e-5, README "Reliability"); anything
that changes what the sampler computes moves them by far more (the nearest ablation, lambda
0.5 -> 0.6, by over 1e-2 here).

Regenerate, only after a change meant to alter the pictures: ``python
tests/test_unchanged_pictures.py``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from flipsketch.api import SamplerSettings, animate, load_pipeline

from testing import shared_sketch

RECORDED = Path(__file__).parent / "data" / "default_run_frames.npz"
SETTINGS = SamplerSettings(num_inference_steps=8, num_frames=4)
TOLERANCE = 2e-3


def default_run(settings: SamplerSettings = SETTINGS) -> np.ndarray:
    """(F, H, W) frames of the recorded run, sampled now."""
    [clip] = animate(load_pipeline("tiny"), "a fish swimming to the right",
                     shared_sketch("fish.png"), settings, cache=False)
    return clip.frames


def test_a_default_run_gives_the_recorded_frames_and_a_changed_setting_does_not():
    recorded = np.load(RECORDED)["frames"].astype(np.float32)
    frames = default_run()
    assert frames.shape == recorded.shape
    assert np.abs(frames - recorded).max() <= TOLERANCE
    # The tolerance is far below what changing the sampler does.
    changed = default_run(replace(SETTINGS, lambda_=0.6))
    assert np.abs(changed - recorded).max() > 5 * TOLERANCE


if __name__ == "__main__":
    RECORDED.parent.mkdir(exist_ok=True)
    np.savez_compressed(RECORDED, frames=default_run().astype(np.float16))
    print(f"recorded {RECORDED}")
