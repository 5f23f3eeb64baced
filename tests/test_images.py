"""Loading sketches of every kind Pillow opens, and the frame <-> array conversions."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from flipsketch.errors import UsageError
from flipsketch.frames.images import array_to_images, images_to_array, load_sketch, to_grey_square

from testing import shared_sketch


def disc_mask(width: int, height: int, radius: float) -> np.ndarray:
    """(height, width) bool: a filled circle centred in the canvas."""
    y, x = np.mgrid[:height, :width]
    return np.hypot(x - (width - 1) / 2, y - (height - 1) / 2) <= radius


# A wide drawing: black disc on white paper, 120 x 60.
W, H = 120, 60
INK = disc_mask(W, H, 20)


def as_mode(mode: str) -> Image.Image:
    """The same drawing in ``mode``, made the way real files of that mode look."""
    ink = INK
    if mode == "L":
        return Image.fromarray(np.where(ink, 0, 255).astype(np.uint8))
    if mode == "1":
        return as_mode("L").convert("1")
    if mode == "RGB":
        return as_mode("L").convert("RGB")
    if mode == "RGBA":  # drawing app export: transparent paper whose colour is black
        rgba = np.zeros((H, W, 4), np.uint8)
        rgba[..., 3] = np.where(ink, 255, 0)
        return Image.fromarray(rgba)
    if mode == "LA":
        la = np.zeros((H, W, 2), np.uint8)
        la[..., 1] = np.where(ink, 255, 0)
        return Image.fromarray(la, mode="LA")
    if mode in ("P", "PA"):
        p = Image.fromarray(np.where(ink, 1, 0).astype(np.uint8), mode="P")
        p.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)  # entry 0: black, but transparent
        if mode == "P":
            p.info["transparency"] = 0
            return p
        pa = p.convert("PA")  # alpha from a separate band this time
        pa.putalpha(Image.fromarray(np.where(ink, 255, 0).astype(np.uint8)))
        return pa
    if mode == "I;16":  # 16-bit scan: paper at full scale
        return Image.fromarray(np.where(ink, 0, 65535).astype(np.uint16))
    if mode == "I":
        return Image.fromarray(np.where(ink, 0, 65535).astype(np.int32), mode="I")
    if mode == "F":
        return Image.fromarray(np.where(ink, 0.0, 1.0).astype(np.float32), mode="F")
    if mode == "CMYK":  # no ink = white paper, K = black
        cmyk = np.zeros((H, W, 4), np.uint8)
        cmyk[..., 3] = np.where(ink, 255, 0)
        return Image.fromarray(cmyk, mode="CMYK")
    raise AssertionError(mode)


MODES = ["L", "1", "RGB", "RGBA", "LA", "P", "PA", "I;16", "I", "F", "CMYK"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_becomes_black_on_white_square(mode):
    img = as_mode(mode)
    assert img.mode == mode
    out = to_grey_square(img, 64)
    assert out.mode == "L" and out.size == (64, 64)

    # Every mode must give what the plain grey drawing gives: transparency as white paper,
    # 16-bit and float greys at full scale.
    reference = np.asarray(to_grey_square(as_mode("L"), 64)).astype(int)
    assert np.abs(np.asarray(out).astype(int) - reference).max() <= 2, mode


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "PA", "P"])
def test_every_mode_survives_the_shrink_of_large_drawings(mode):
    """A drawing over 8x the target is box-averaged first; modes with alpha go through a
    premultiplied copy (grey + alpha used to fail there)."""
    def large(m: str) -> Image.Image:
        img = as_mode(m)
        return img.resize((img.width * 16, img.height * 16), Image.NEAREST)

    out = np.asarray(to_grey_square(large(mode), 64)).astype(int)
    reference = np.asarray(to_grey_square(large("L"), 64)).astype(int)
    assert np.abs(out - reference).max() <= 2, mode


def test_wide_drawing_is_padded_centred_and_a_circle_stays_round():
    # 120 x 60 scales by 64/120: the disc (radius 20 -> 10.7) stays round in the centre and
    # white bands of 16 rows pad the top and bottom.
    px = np.asarray(to_grey_square(as_mode("L"), 64))
    assert (px[:15] == 255).all() and (px[-15:] == 255).all()
    ys, xs = np.nonzero(px < 128)
    assert abs((np.ptp(ys) + 1) - (np.ptp(xs) + 1)) <= 1 and abs(np.ptp(xs) + 1 - 21.3) <= 1.5
    assert abs(ys.mean() - 31.5) < 0.5 and abs(xs.mean() - 31.5) < 0.5


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGBA"), ("PNG", "P"), ("GIF", "P"),
                                      ("PNG", "LA"), ("PNG", "I;16"), ("TIFF", "CMYK"),
                                      ("WEBP", "RGBA"), ("PNG", "1")])
def test_files_of_each_mode_load(tmp_path, fmt, mode):
    path = tmp_path / f"drawing.{fmt.lower()}"
    extra = {"lossless": True} if fmt == "WEBP" else {}
    as_mode(mode).save(path, format=fmt, **extra)
    loaded = load_sketch(path)
    assert loaded.size == (W, H)
    px = np.asarray(to_grey_square(loaded, 120)).astype(int)  # no resampling: 120 = W
    assert px[60, 60] == 0 and px[30:90][~INK].min() >= 250  # ink black, paper white
    assert (px[:30] == 255).all() and (px[90:] == 255).all()  # padding, centred


def test_sixteen_bit_greys_scale_instead_of_clipping(tmp_path):
    levels = np.array([0, 16384, 32768, 49152, 65535], dtype=np.uint16)
    strip = np.repeat(np.repeat(levels[None], 50, axis=0), 50, axis=1)  # (50, 250)
    path = tmp_path / "scan16.png"
    Image.fromarray(strip).save(path)
    loaded = load_sketch(path)
    assert loaded.mode.startswith("I")
    px = np.asarray(to_grey_square(loaded, 250))[125]  # middle row, (250,)
    measured = [int(np.median(px[i * 50 + 10:i * 50 + 40])) for i in range(5)]
    assert measured == [round(v / 65535 * 255) for v in levels]


def test_exif_orientation_is_applied(tmp_path):
    # Stored landscape with ink on the left; EXIF 6 says "rotate 90 degrees clockwise to
    # view", so the viewed drawing is portrait with the ink at the top.
    px = np.full((50, 100), 255, np.uint8)
    px[:, :30] = 0
    img = Image.fromarray(px)
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.png"
    img.save(path, exif=exif)
    out = np.asarray(to_grey_square(load_sketch(path), 100))
    assert out[:, :25].min() == 255 and out[:, 75:].min() == 255  # portrait: side padding
    assert out[:25, 30:70].max() == 0 and out[40:, 30:70].min() == 255


@pytest.mark.parametrize("name", ["camel.png", "cat.png", "cloud.png", "fish.png", "horse.png"])
def test_shared_sketches_load(name):
    img = load_sketch(shared_sketch(name))
    assert img.mode == "RGBA"
    out = np.asarray(to_grey_square(img, 256))
    assert out.shape == (256, 256)
    assert out.min() < 64  # strokes survive the compositing
    assert (out > 200).mean() > 0.7  # and the transparent background became paper
    assert out[0, 0] > 240 and out[-1, -1] > 240


def _zero_width_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 0, 10, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "text", "truncated", "zero"])
def test_bad_sketches_are_one_line_usage_errors(tmp_path, case):
    path = tmp_path / "x.png"
    if case == "folder":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("not a drawing\n")
    elif case == "truncated":
        data = shared_sketch("camel.png").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "zero":
        path.write_bytes(_zero_width_png())
    with pytest.raises(UsageError) as info:
        load_sketch(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and ";" in message


def test_frames_round_trip_through_arrays():
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (12, 20), dtype=np.uint8)) for _ in range(3)]
    array = images_to_array(frames)
    assert array.shape == (3, 12, 20) and array.dtype == np.float32
    assert array.min() >= 0.0 and array.max() <= 1.0
    back = array_to_images(array)
    assert [im.mode for im in back] == ["L"] * 3
    for a, b in zip(frames, back, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_array_to_images_clips_and_rounds():
    frames = np.array([[[-0.5, 0.0, 0.5, 1.0, 1.7]]], dtype=np.float32)  # (1, 1, 5)
    assert np.asarray(array_to_images(frames)[0]).tolist() == [[0, 0, 128, 255, 255]]


def test_images_to_array_takes_colour_frames_as_grey_and_rejects_mixed_sizes():
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    assert np.allclose(images_to_array([red]), round(0.299 * 255) / 255, atol=1 / 255)
    with pytest.raises(ValueError):
        images_to_array([Image.new("L", (4, 4)), Image.new("L", (5, 4))])
