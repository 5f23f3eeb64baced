"""Otsu binarisation and the raw post-processor, on constructed clips and a real sketch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image, ImageFilter

import flipsketch.builtins.postprocess
import flipsketch.frames.postprocess
from flipsketch.errors import UsageError
from flipsketch.frames.images import array_to_images, load_sketch, to_grey_square
from flipsketch.frames.postprocess import PostprocessSettings, binarize, otsu_threshold, raw
from flipsketch.plugins import PluginManager

from testing import shared_sketch


def test_otsu_lands_between_the_modes_on_any_scale():
    rng = np.random.default_rng(0)
    ink = rng.normal(40, 10, 3000)
    paper = rng.normal(200, 10, 7000)
    grey = np.clip(np.concatenate([ink, paper]), 0, 255).astype(np.uint8)
    threshold = otsu_threshold(grey)
    assert 40 + 30 < threshold < 200 - 30
    assert (grey[:3000] < threshold).mean() > 0.999 and (grey[3000:] >= threshold).mean() > 0.999
    # Same data as 0..1 floats: the threshold comes back on that scale.
    assert otsu_threshold(grey / 255.0) == pytest.approx(threshold / 255.0, abs=1 / 255)


def test_otsu_splits_two_values_and_survives_constant_input():
    two = np.array([0.2] * 10 + [0.9] * 90)
    threshold = otsu_threshold(two)
    assert 0.2 < threshold <= 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert otsu_threshold(np.full((4, 4), 0.7)) == pytest.approx(0.7)


def soft_strokes(size: int = 64) -> Image.Image:
    """A decoded-looking frame: blurred grey strokes on slightly noisy paper."""
    px = np.full((size, size), 250, np.uint8)
    px[20:24, 8:56] = 30
    px[8:56, 40:43] = 30
    img = Image.fromarray(px).filter(ImageFilter.GaussianBlur(1.2))
    noise = np.random.default_rng(1).integers(-4, 5, (size, size))
    return Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))


def test_binarize_gives_two_levels_with_strokes_in_place():
    frame = soft_strokes()
    out = binarize([frame, frame.transpose(Image.Transpose.FLIP_LEFT_RIGHT)],
                   PostprocessSettings(size=128))
    assert [(im.mode, im.size) for im in out] == [("L", (128, 128))] * 2
    px = np.asarray(out[0])
    assert set(np.unique(px)) == {0, 255}
    # Stroke centres (scaled x2) are ink, paper well away from them is white.
    assert (px[42:46, 20:108] == 0).all() and (px[20:108, 82:84] == 0).all()
    assert (px[60:80, 10:70] == 255).all() and (px[100:, :70] == 255).all()
    # The mirrored frame is binarised as the mirror image.
    assert np.array_equal(np.asarray(out[1]), px[:, ::-1])


def test_binarize_keeps_the_drawing_of_a_real_sketch():
    sketch = load_sketch(shared_sketch("cat.png"))
    small = to_grey_square(sketch, 64)  # the model's resolution, soft edges
    out = np.asarray(binarize([small], PostprocessSettings(size=256))[0])
    reference = np.asarray(to_grey_square(sketch, 256)) < 128  # (256, 256) ink at full size
    ink = out == 0
    assert 0.5 < ink.sum() / reference.sum() < 2.5  # about the same amount of ink
    # Nearly every pixel agrees; strokes stay where the drawing had them.
    assert (ink == reference).mean() > 0.95
    assert ink[reference].mean() > 0.6


def test_one_threshold_for_the_clip_so_grey_areas_do_not_flicker():
    """A mid-grey smudge next to black strokes is paper; on a frame where the strokes are
    gone, Otsu alone would call the same smudge ink and it would blink on and off."""

    def frame(strokes: bool) -> Image.Image:
        px = np.full((64, 64), 250, np.uint8)
        px[40:56, 40:56] = 140  # the smudge
        if strokes:
            px[10:20, 4:60] = 0
            px[4:60, 10:20] = 0
        return Image.fromarray(px)

    settings = PostprocessSettings(size=64)
    per_frame = [np.asarray(binarize([frame(s)], settings)[0])[48, 48] for s in (True, False)]
    assert per_frame == [255, 0]  # what thresholding each frame on its own would do
    clip = [np.asarray(im) for im in binarize([frame(True), frame(False)], settings)]
    assert clip[0][48, 48] == clip[1][48, 48] == 255
    assert clip[0][15, 30] == 0


@pytest.mark.parametrize("level,expected", [(1.0, 255), (0.0, 0), (0.97, 255)])
def test_blank_clips_do_not_divide_by_zero(level, expected):
    clip = array_to_images(np.full((3, 16, 16), level, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = binarize(clip, PostprocessSettings(size=16))
    assert all((np.asarray(im) == expected).all() for im in out)


def test_nearly_blank_clip_keeps_its_one_dark_dot_and_drops_the_noise():
    px = np.random.default_rng(3).integers(245, 256, (2, 32, 32)).astype(np.float32) / 255
    px[0, 10:13, 10:13] = 0.0
    out = binarize(array_to_images(px), PostprocessSettings(size=32))
    first = np.asarray(out[0])
    assert (first[10:13, 10:13] == 0).all() and (first == 0).sum() == 9
    assert (np.asarray(out[1]) == 255).all()


def test_transparent_binarize_puts_black_ink_on_clear_paper():
    out = binarize([soft_strokes()], PostprocessSettings(size=64, transparent=True))[0]
    assert out.mode == "RGBA"
    rgba = np.asarray(out)
    alpha = rgba[..., 3]
    assert set(np.unique(alpha)) == {0, 255}
    assert (alpha[21:23, 10:54] == 255).all() and (alpha[30:50, 5:35] == 0).all()
    assert (rgba[..., :3][alpha == 255] == 0).all()  # strokes are black


def test_raw_keeps_grey_levels_and_makes_darkness_opacity():
    levels = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32).repeat(4, axis=0)  # (4, 4)
    frame = array_to_images(levels[None])[0]
    grey = np.asarray(raw([frame], PostprocessSettings(size=4))[0])
    assert np.array_equal(grey, np.asarray(frame))
    clear = np.asarray(raw([frame], PostprocessSettings(size=4, transparent=True))[0])
    assert np.array_equal(clear[..., 3], 255 - np.asarray(frame))
    # Raw resizes too, smoothly: a larger output still spans the same grey range.
    big = np.asarray(raw([frame], PostprocessSettings(size=32))[0])
    assert big.shape == (32, 32) and big.min() <= 5 and big.max() >= 250


def test_settings_reject_a_size_below_one():
    with pytest.raises(UsageError, match="size"):
        PostprocessSettings(size=0)


def test_registered_under_their_names():
    manager = PluginManager(load_entry_points=False)
    manager.register(flipsketch.builtins.postprocess)  # already there: nothing changes
    registry = manager.registry("postprocessor")
    assert registry.get("binarize") is binarize and registry.get("raw") is raw
    assert registry.get(None) is flipsketch.frames.postprocess.lineart  # the stage default


# -- lineart: crisp strokes at the input's pen width ------------------------------------------


def _lines(width: int, size: int = 256) -> np.ndarray:
    """A diagonal line and an ellipse drawn with a pen of ``width`` px, (H, W) in [0, 1]."""
    from PIL import ImageDraw

    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(20, 30), (230, 200)], fill=0, width=width)
    draw.ellipse((50, 100, 150, 220), outline=0, width=width)
    return np.asarray(image, np.float32) / 255


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8])
def test_stroke_width_is_measured_in_pixels(width):
    assert abs(flipsketch.frames.postprocess.measure_stroke_width(_lines(width)) - width) <= 1.0


def test_thinning_leaves_one_pixel_centre_lines_that_stay_connected():
    import cv2

    thick = _lines(9) < 0.5
    lines = flipsketch.frames.postprocess.thin(thick)
    assert lines.sum() < thick.sum() / 6
    assert (lines & thick).sum() == lines.sum()  # inside the strokes
    # No 2 x 2 block of ink anywhere: one pixel wide.
    blocks = lines[:-1, :-1] & lines[1:, :-1] & lines[:-1, 1:] & lines[1:, 1:]
    assert not blocks.any()
    # The line and the ellipse cross: one connected drawing before and after.
    count = cv2.connectedComponents(lines.astype(np.uint8), connectivity=8)[0] - 1
    assert count == cv2.connectedComponents(thick.astype(np.uint8), connectivity=8)[0] - 1 == 1


def test_lineart_redraws_an_upscaled_drawing_at_the_input_pen_width():
    # A 128 px frame with strokes 3 px wide, shown at 512: binarize keeps them ~12 px wide,
    # lineart draws them at the pen width asked for, on the same centre lines.
    small = Image.fromarray((_lines(3) * 255).astype(np.uint8)).resize((128, 128))
    frames = [small.filter(ImageFilter.GaussianBlur(0.7))] * 2
    thick = np.asarray(binarize(frames, PostprocessSettings(size=512))[0], np.float32) / 255
    crisp = flipsketch.frames.postprocess.lineart(frames, PostprocessSettings(size=512,
                                                                       stroke_width=4))
    out = np.asarray(crisp[0], np.float32) / 255
    assert set(np.unique(out)) <= {0.0, 1.0}
    measure = flipsketch.frames.postprocess.measure_stroke_width
    assert measure(thick) > 8
    assert abs(measure(out) - 4) <= 1.5
    # Every line kept where it was: the crisp ink lies inside the thick ink.
    assert ((out < 0.5) & (thick > 0.5)).sum() < 0.02 * (out < 0.5).sum()
    # With the input drawing, its own pen width measured at the output size (3 px at 256
    # px drawn at 512: 6 px).
    drawing = Image.fromarray((_lines(3) * 255).astype(np.uint8))
    settings = PostprocessSettings(size=512, sketch=drawing)
    own = flipsketch.frames.postprocess.lineart(frames, settings)
    assert abs(measure(np.asarray(own[0], np.float32) / 255) - 6) <= 1.5
    # Without an input drawing: the default width, scaled to the output size.
    default = flipsketch.frames.postprocess.lineart(frames, PostprocessSettings(size=256))
    expected = flipsketch.frames.postprocess.DEFAULT_STROKE_WIDTH * 256 / 512
    got = measure(np.asarray(default[0], np.float32) / 255)
    assert abs(got - expected) <= 1.5


def test_lineart_is_a_registered_postprocessor_with_transparency():
    manager = PluginManager()
    processor = manager.get("postprocessor", "lineart")
    frame = Image.fromarray((_lines(3, size=64) * 255).astype(np.uint8))
    [layer] = processor([frame], PostprocessSettings(size=64, transparent=True, stroke_width=2))
    assert layer.mode == "RGBA"
    alpha = np.asarray(layer)[..., 3]
    assert set(np.unique(alpha)) == {0, 255}
    blank = processor([Image.new("L", (32, 32), 255)], PostprocessSettings(size=32))
    assert np.asarray(blank[0]).min() == 255  # nothing drawn where nothing was
