"""Sketch-guided real video with tiny random-weight models of the real classes.

The base folder is laid out like Stable Diffusion 1.5 (a ``StableDiffusionPipeline`` folder
without safety checker), the motion adapter and ControlNet are separate folders, exactly as
the hub ids in the ``video`` step point to; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from flipsketch.errors import ModelLoadError, UsageError
from flipsketch.frames.images import load_sketch, to_grey_square
from flipsketch.models.video import (
    VideoModels,
    load_video_pipeline,
    scribble_frames,
    sketch_to_video,
)

from testing import save_tiny_video_models, shared_sketch


@pytest.fixture(scope="session")
def tiny_video_models(tmp_path_factory) -> VideoModels:
    return save_tiny_video_models(tmp_path_factory.mktemp("video-models"))


@pytest.fixture(scope="module")
def video_pipe(tiny_video_models):
    return load_video_pipeline(tiny_video_models, device="cpu")


def sketch_frames(name: str, count: int, size: int = 64) -> list[Image.Image]:
    path = shared_sketch(name)
    drawing = to_grey_square(load_sketch(path), size)
    return [drawing.rotate(5 * i, fillcolor=255) for i in range(count)]


def test_loads_the_three_parts_with_animatediff_scheduler(video_pipe):
    from diffusers import AnimateDiffControlNetPipeline, DDIMScheduler, UNetMotionModel

    assert isinstance(video_pipe, AnimateDiffControlNetPipeline)
    assert isinstance(video_pipe.unet, UNetMotionModel)  # SD UNet + motion adapter
    assert isinstance(video_pipe.scheduler, DDIMScheduler)
    assert video_pipe.scheduler.config.beta_schedule == "linear"
    assert video_pipe.scheduler.config.timestep_spacing == "linspace"


def test_one_video_frame_per_sketch_frame_following_the_sketch(video_pipe):
    cat = sketch_frames("cat.png", 4)
    kwargs = dict(num_inference_steps=2, size=32)
    video = sketch_to_video(video_pipe, cat, "a cat", seed=1, **kwargs)
    assert video.shape == (4, 32, 32, 3) and video.dtype == np.float32
    assert 0.0 <= video.min() and video.max() <= 1.0

    again = sketch_to_video(video_pipe, cat, "a cat", seed=1, **kwargs)
    np.testing.assert_allclose(video, again, atol=1e-6)  # a seed gives one video
    other_seed = sketch_to_video(video_pipe, cat, "a cat", seed=2, **kwargs)
    assert np.abs(video - other_seed).mean() > 1e-4
    other_sketch = sketch_to_video(video_pipe, sketch_frames("horse.png", 4), "a cat", seed=1,
                                   **kwargs)
    assert np.abs(video - other_sketch).mean() > 1e-4  # the ControlNet sees the sketch
    ignored = sketch_to_video(video_pipe, sketch_frames("horse.png", 4), "a cat", seed=1,
                              conditioning_scale=0.0, **kwargs)
    unguided = sketch_to_video(video_pipe, cat, "a cat", seed=1, conditioning_scale=0.0,
                               **kwargs)
    np.testing.assert_allclose(ignored, unguided, atol=1e-5)  # ... and only through it


def test_progress_is_reported_per_denoising_step(video_pipe):
    seen = []
    sketch_to_video(video_pipe, sketch_frames("fish.png", 2), "a fish", num_inference_steps=3,
                    size=32, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_scribbles_are_white_strokes_on_black():
    sketch = Image.new("L", (16, 16), 255)
    sketch.paste(0, (4, 0, 6, 16))  # a black stroke on white paper
    (scribble,) = scribble_frames([sketch], 32)
    pixels = np.asarray(scribble)
    assert scribble.mode == "RGB" and scribble.size == (32, 32)
    assert pixels[:, 10].min() > 200 and pixels[:, 30].max() < 50  # stroke white, paper black


def test_too_many_frames_and_bad_size_are_usage_errors(video_pipe):
    with pytest.raises(UsageError, match="at most 32 frames"):
        sketch_to_video(video_pipe, sketch_frames("cat.png", 1) * 33, "a cat", size=32)
    with pytest.raises(UsageError, match="multiple of 8"):
        sketch_to_video(video_pipe, sketch_frames("cat.png", 2), "a cat", size=30)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_weights_give_one_line(tmp_path, tiny_video_models):
    empty = tmp_path / "empty"
    empty.mkdir()
    models = VideoModels(tiny_video_models.base, str(empty), tiny_video_models.controlnet)
    with pytest.raises(ModelLoadError) as exc:
        load_video_pipeline(models, device="cpu")
    assert f"motion adapter '{empty}'" in one_line(exc)

    # Offline (the test session sets HF_HUB_OFFLINE), a hub id that is not cached.
    models = VideoModels(tiny_video_models.base, tiny_video_models.motion_adapter,
                         "nobody/no-such-controlnet")
    with pytest.raises(ModelLoadError) as exc:
        load_video_pipeline(models, device="cpu")
    assert "hf download nobody/no-such-controlnet" in one_line(exc)


def test_pickled_weights_are_refused(tmp_path, tiny_video_models):
    from diffusers import MotionAdapter

    pickled = tmp_path / "pickled-adapter"
    MotionAdapter.from_pretrained(tiny_video_models.motion_adapter).save_pretrained(
        pickled, safe_serialization=False)
    assert (pickled / "diffusion_pytorch_model.bin").exists()
    models = VideoModels(tiny_video_models.base, str(pickled), tiny_video_models.controlnet)
    with pytest.raises(ModelLoadError) as exc:
        load_video_pipeline(models, device="cpu")
    assert "safetensors" in one_line(exc)
