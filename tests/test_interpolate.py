"""The ``flow`` interpolator on real sketches: in-between frames move strokes, not fade them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from flipsketch.errors import UsageError
from flipsketch.frames.images import load_sketch, to_grey_square
from flipsketch.frames.interpolate import flow_interpolate
from flipsketch.plugins import get_manager

from testing import shared_sketch


def real_sketch(name: str, size: int = 128) -> Image.Image:
    path = shared_sketch(name)
    return to_grey_square(load_sketch(path), size)


def shifted(img: Image.Image, dx: int, dy: int) -> Image.Image:
    """``img`` moved by (dx, dy) pixels over white paper."""
    moved = Image.new("L", img.size, 255)
    moved.paste(img, (dx, dy))
    return moved


def grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


@pytest.mark.parametrize("name, dx, dy", [("cat.png", 8, 4), ("horse.png", -12, 6)])
def test_middle_frame_is_the_drawing_half_way(name, dx, dy):
    start = real_sketch(name)
    end = shifted(start, dx, dy)
    truth = grey(shifted(start, dx // 2, dy // 2))

    middle = grey(flow_interpolate([start, end], 2)[1])
    crossfade = (grey(start) + grey(end)) / 2

    flow_error = np.abs(middle - truth).mean()
    fade_error = np.abs(crossfade - truth).mean()
    assert flow_error < 0.25 * fade_error, (flow_error, fade_error)


def test_a_stroke_travels_instead_of_fading():
    start = Image.new("L", (256, 256), 255)
    start.paste(0, (72, 32, 76, 224))  # a 4-px vertical stroke at x = 72..75
    end = shifted(start, 32, 0)  # ... at x = 104..107, eight stroke widths further

    middle = grey(flow_interpolate([start, end], 2)[1])
    ink = 1.0 - middle.mean(axis=0)  # (256,) darkness per column
    assert 86 <= int(np.argmax(ink)) <= 93  # half-way: x = 88..91
    assert ink[72:76].max() < 0.1 and ink[104:108].max() < 0.1  # no ghost at either end


def test_frame_count_and_original_frames_kept():
    frames = [shifted(real_sketch("fish.png", 64), 3 * i, 0) for i in range(4)]
    out = flow_interpolate(frames, 3)
    assert len(out) == (4 - 1) * 3 + 1
    for i, frame in enumerate(frames):
        assert np.array_equal(np.asarray(out[3 * i]), np.asarray(frame))
    assert all(f.mode == "L" and f.size == (64, 64) for f in out)


def test_colour_frames_stay_colour_and_move():
    def red(img: Image.Image) -> Image.Image:  # red strokes on white
        return Image.merge("RGB", (Image.new("L", img.size, 255), img, img))

    cat = real_sketch("cat.png")
    start, end, truth = red(cat), red(shifted(cat, 8, 0)), red(shifted(cat, 4, 0))
    middle = flow_interpolate([start, end], 2)[1]
    assert middle.mode == "RGB"

    def rgb(img: Image.Image) -> np.ndarray:
        return np.asarray(img, dtype=np.float32) / 255.0

    flow_error = np.abs(rgb(middle) - rgb(truth)).mean()
    fade_error = np.abs((rgb(start) + rgb(end)) / 2 - rgb(truth)).mean()
    assert flow_error < 0.25 * fade_error, (flow_error, fade_error)


def test_factor_one_and_single_frame_are_unchanged():
    cat = real_sketch("cat.png", 32)
    assert flow_interpolate([cat, cat], 1) == [cat, cat]
    assert flow_interpolate([cat], 4) == [cat]


@pytest.mark.parametrize("factor", [0, -2, 1.5])
def test_bad_factor_is_a_usage_error(factor):
    cat = real_sketch("cat.png", 32)
    with pytest.raises(UsageError, match="factor"):
        flow_interpolate([cat, cat], factor)


def test_flow_is_the_default_interpolator_plugin():
    registry = get_manager().registry("interpolator")
    assert registry.default == "flow"
    assert registry.get(None) is flow_interpolate
    assert registry.owners["flow"] == "interpolate"
