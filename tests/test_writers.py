"""Every built-in writer round-trips, and saving is safe: no clobbering, no half-written files."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageSequence

import flipsketch.builtins.writers
from flipsketch import hookimpl
from flipsketch.errors import PluginError, UsageError
from flipsketch.frames.writers import Writer, check_output_path, save_frames
from flipsketch.plugins import PluginManager

FRAMES = 5


def moving_square(size: tuple[int, int] = (40, 30)) -> list[Image.Image]:
    """Binary frames, black square walking right on white: each frame differs."""
    w, h = size
    frames = []
    for i in range(FRAMES):
        px = np.full((h, w), 255, np.uint8)
        px[8:18, 4 + 5 * i:14 + 5 * i] = 0
        frames.append(Image.fromarray(px))
    return frames


def transparent(frames: list[Image.Image]) -> list[Image.Image]:
    """What ``binarize`` gives with transparency: black ink, alpha 255 on ink and 0 on paper."""
    out = []
    for frame in frames:
        layer = Image.new("RGBA", frame.size, (0, 0, 0, 0))
        layer.putalpha(frame.point(lambda v: 255 - v))
        out.append(layer)
    return out


def read_frames(path: Path) -> list[Image.Image]:
    with Image.open(path) as img:
        return [f.convert("RGBA") for f in ImageSequence.Iterator(img)]


def grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"))


@pytest.fixture
def manager() -> PluginManager:
    """Only the built-in writers, so these tests do not depend on what else is installed."""
    manager = PluginManager(load_entry_points=False)
    manager.register(flipsketch.builtins.writers)
    return manager


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["clip.gif", "clip.webp", "clip.png", "clip.apng"])
def test_lossless_writers_round_trip_pixels(tmp_path, manager, name):
    frames = moving_square()
    out = save_frames(frames, tmp_path / name, fps=10, manager=manager)
    assert out == tmp_path / name and listing(tmp_path) == [name]
    back = read_frames(out)
    assert len(back) == FRAMES and all(f.size == (40, 30) for f in back)
    for original, read in zip(frames, back, strict=True):
        assert np.array_equal(grey(read), np.asarray(original))
    with Image.open(out) as img:
        assert img.info.get("loop") == 0  # forever
        durations = []
        for frame in ImageSequence.Iterator(img):
            frame.load()  # WebP knows a frame's duration only once it is decoded
            durations.append(frame.info["duration"])
    assert durations == [100] * FRAMES  # 10 fps


@pytest.mark.parametrize("name", ["clip.gif", "clip.webp", "clip.png"])
def test_transparency_survives(tmp_path, manager, name):
    frames = moving_square()
    out = save_frames(transparent(frames), tmp_path / name, fps=8, manager=manager)
    for original, read in zip(frames, read_frames(out), strict=True):
        rgba = np.asarray(read)
        ink = np.asarray(original) == 0
        assert (rgba[..., 3][~ink] == 0).all()  # paper is clear, also after earlier frames
        assert (rgba[..., 3][ink] == 255).all() and (rgba[..., :3][ink] == 0).all()


def test_gif_of_partial_alpha_uses_half_opacity_as_the_cut(tmp_path, manager):
    alpha = np.array([[0, 100, 160, 255]], np.uint8).repeat(4, axis=0)
    layer = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    layer.putalpha(Image.fromarray(alpha))
    read = np.asarray(read_frames(save_frames([layer], tmp_path / "a.gif", manager=manager))[0])
    assert read[0, :, 3].tolist() == [0, 0, 255, 255]
    assert read[0, 2, 0] == 255 - 160  # shown as its colour over white paper


def test_mp4_round_trip(tmp_path, manager):
    frames = moving_square((41, 31))  # odd: yuv420p needs even sizes
    out = save_frames(transparent(frames), tmp_path / "clip.mp4", fps=12, manager=manager)
    video = cv2.VideoCapture(str(out))  # a different FFmpeg build than the encoder's
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    decoded = []
    while (frame := video.read())[0]:
        decoded.append(frame[1])  # (H, W, 3) BGR
    video.release()
    assert all(f.shape == (32, 42, 3) for f in decoded)
    assert len(decoded) == FRAMES
    for original, read in zip(frames, decoded, strict=True):
        # Lossy, but transparent paper became white and the square is where it was.
        error = np.abs(read[:31, :41].mean(axis=2) - np.asarray(original).astype(float))
        assert error.mean() < 8
        assert read[:, 41].min() > 200 and read[31].min() > 200  # padding is white


def test_png_frames_folder(tmp_path, manager):
    frames = moving_square()
    out = save_frames(frames, tmp_path / "frames", manager=manager)
    assert listing(tmp_path) == ["frames"]
    assert listing(out) == [f"frame_{i:03d}.png" for i in range(FRAMES)]
    for i, original in enumerate(frames):
        with Image.open(out / f"frame_{i:03d}.png") as img:
            assert np.array_equal(np.asarray(img), np.asarray(original))


def test_many_frames_widen_the_frame_numbers(tmp_path, manager):
    frames = [Image.new("L", (2, 2), i % 256) for i in range(1001)]
    out = save_frames(frames, tmp_path / "long", manager=manager)
    names = listing(out)
    assert len(names) == 1001 and names[0] == "frame_0000.png" and names[-1] == "frame_1000.png"


# -- choosing the writer ---------------------------------------------------------------------
class SheetPlugin:
    """A third-party writer claiming a longer suffix than the built-in ".png"."""

    @staticmethod
    def write(frames, path, fps):
        frames[0].save(path, format="PNG")

    @hookimpl
    def register_writers(self, register):
        register("sheet", Writer("sheet", (".sheet.png",), self.write))


@pytest.mark.parametrize("name,expected", [
    ("a.gif", "gif"), ("A.GIF", "gif"), ("a.webp", "webp"), ("a.png", "apng"),
    ("a.apng", "apng"), ("a.mp4", "mp4"), ("a", "png-frames"), ("a.b.sheet.png", "sheet"),
    ("a.sheet.PNG", "sheet"), ("sheet.png", "apng"),
])
def test_longest_claimed_suffix_picks_the_writer(tmp_path, manager, name, expected):
    manager.register(SheetPlugin(), name="sheet-plugin")
    assert check_output_path(tmp_path / name, manager=manager).name == expected


def test_unknown_suffix_names_the_known_ones(tmp_path, manager):
    with pytest.raises(UsageError) as info:
        check_output_path(tmp_path / "clip.avi", manager=manager)
    message = str(info.value)
    assert "'.avi'" in message and ".gif" in message and ".mp4" in message
    assert "\n" not in message


def test_existing_folder_means_frames_and_explicit_writer_wins(tmp_path, manager):
    (tmp_path / "looks.gif").mkdir()
    assert check_output_path(tmp_path / "looks.gif", force=True, manager=manager).name == \
        "png-frames"
    out = save_frames(moving_square(), tmp_path / "clip.bin", writer="gif", manager=manager)
    with Image.open(out) as img:
        assert img.format == "GIF" and img.n_frames == FRAMES
    with pytest.raises(PluginError, match="unknown writer 'avi'"):
        check_output_path(tmp_path / "x.gif", writer="avi", manager=manager)


# -- safety ------------------------------------------------------------------------------------
def test_refuses_to_overwrite_without_force_and_replaces_with_it(tmp_path, manager):
    target = tmp_path / "out.gif"
    target.write_bytes(b"my precious file")
    with pytest.raises(UsageError) as info:
        save_frames(moving_square(), target, manager=manager)
    assert str(info.value) == f"'{target}' exists; pass --force to overwrite"
    assert target.read_bytes() == b"my precious file"

    save_frames(moving_square(), target, force=True, manager=manager)
    assert listing(tmp_path) == ["out.gif"]
    with Image.open(target) as img:
        assert img.n_frames == FRAMES


def test_check_output_path_writes_nothing(tmp_path, manager):
    assert check_output_path(tmp_path / "out.mp4", manager=manager).name == "mp4"
    assert listing(tmp_path) == []


@pytest.mark.parametrize("case", ["missing", "file"])
def test_parent_folder_must_exist(tmp_path, manager, case):
    parent = tmp_path / "nope"
    if case == "file":
        parent.write_text("a file, not a folder")
    with pytest.raises(UsageError, match="does not exist; create it first"):
        save_frames(moving_square(), parent / "out.gif", manager=manager)


def test_unwritable_parent_is_a_usage_error(tmp_path, manager):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: folder permissions do not stop writes")
        with pytest.raises(UsageError, match="cannot write to folder"):
            save_frames(moving_square(), locked / "out.gif", manager=manager)
    finally:
        locked.chmod(0o700)


def test_bad_fps_is_a_usage_error(tmp_path, manager):
    with pytest.raises(UsageError, match="frame rate"):
        save_frames(moving_square(), tmp_path / "out.gif", fps=0, manager=manager)
    assert listing(tmp_path) == []


class Failing:
    """Writers that die half-way, like a full disk or a Ctrl-C during encoding."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def write_file(self, frames, path, fps):
        path.write_bytes(b"GIF89a half")
        raise self.error

    def write_folder(self, frames, path, fps):
        path.mkdir()
        (path / "frame_000.png").write_bytes(b"half")
        raise self.error

    @hookimpl
    def register_writers(self, register):
        register("broken", Writer("broken", (".broken",), self.write_file))
        register("broken-folder", Writer("broken-folder", (), self.write_folder))


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
@pytest.mark.parametrize("writer", ["broken", "broken-folder"])
def test_failure_leaves_no_temp_and_keeps_the_old_output(tmp_path, manager, error, writer):
    manager.register(Failing(error), name="failing")
    fresh = tmp_path / "fresh.broken"
    with pytest.raises(type(error)):
        save_frames(moving_square(), fresh, writer=writer, manager=manager)
    assert listing(tmp_path) == []

    old = tmp_path / "old"
    old.mkdir()
    (old / "frame_000.png").write_bytes(b"previous run")
    with pytest.raises(type(error)):
        save_frames(moving_square(), old, force=True, writer=writer, manager=manager)
    assert listing(tmp_path) == ["old"]
    assert (old / "frame_000.png").read_bytes() == b"previous run"


def test_existing_frames_folder_is_replaced_with_force(tmp_path, manager):
    old = save_frames([Image.new("L", (4, 4), 0)] * 12, tmp_path / "frames", manager=manager)
    assert len(listing(old)) == 12
    with pytest.raises(UsageError, match="exists; pass --force"):
        save_frames(moving_square(), old, manager=manager)
    save_frames(moving_square(), old, force=True, manager=manager)
    assert listing(tmp_path) == ["frames"]  # nothing moved aside is left behind
    assert listing(old) == [f"frame_{i:03d}.png" for i in range(FRAMES)]


def test_force_never_deletes_a_folder_of_other_files(tmp_path, manager):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"memories")
    with pytest.raises(UsageError, match="holding other files"):
        save_frames(moving_square(), photos, force=True, manager=manager)
    assert listing(photos) == ["holiday.jpg"]


def test_gif_is_the_default_writer(manager):
    assert manager.registry("writer").get(None).name == "gif"
