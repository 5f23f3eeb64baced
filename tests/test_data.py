"""The clip dataset format: every container, captions from captions.jsonl or .txt files,
frame sampling and padding, grey-on-white squares, and a one-line error for each bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from flipsketch.errors import UsageError
from flipsketch.frames.writers import write_apng, write_gif, write_mp4, write_png_frames, write_webp
from flipsketch.training.data import AnimatorClips, ClipFolder, pick_frames
from flipsketch.training.synth import SketchAnimator, write_dataset

from testing import shared_sketch

ENCODERS = {
    "gif": write_gif, "webp": write_webp, "mp4": write_mp4, "apng": write_apng,
    "png": write_png_frames,
}


def bar_frames(count: int, size: int = 64) -> list[Image.Image]:
    """Frame i is white with a black vertical bar at x = 3i..3i+2, so it can be told apart."""
    frames = []
    for i in range(count):
        frame = Image.new("L", (size, size), 255)
        ImageDraw.Draw(frame).rectangle((3 * i, 8, 3 * i + 2, size - 8), fill=0)
        frames.append(frame)
    return frames


def bar_index(frame: torch.Tensor) -> int:
    """Which bar_frames frame this is: where its darkest column is."""
    return int(frame.mean(dim=0).argmin()) // 3


def write_clip(root: Path, name: str, fmt: str, frames: list[Image.Image], caption: str | None):
    """A clip file (or frame folder) named ``name`` plus, if given, its .txt caption."""
    root.mkdir(exist_ok=True)
    path = root / name
    ENCODERS[fmt](frames, path, 10.0)
    if caption is not None:
        txt = path.with_name((path.name if fmt == "png" else path.stem) + ".txt")
        txt.write_text(caption + "\n")
    return path


@pytest.mark.parametrize(
    "fmt, name", [("gif", "a.gif"), ("webp", "a.webp"), ("mp4", "a.mp4"), ("apng", "a.apng"),
                  ("png", "a")]
)
def test_reads_every_container_sampling_frames_evenly(tmp_path, fmt, name):
    write_clip(tmp_path, name, fmt, bar_frames(12), "a bar moving to the right")
    dataset = ClipFolder(tmp_path, num_frames=4, size=64)
    assert len(dataset) == 1
    item = dataset[0]
    assert item["caption"] == "a bar moving to the right"
    frames = item["frames"]
    assert frames.shape == (4, 64, 64) and frames.dtype == torch.float32
    assert 0.0 <= float(frames.min()) < 0.2 and float(frames.max()) > 0.95
    assert [bar_index(f) for f in frames] == [0, 4, 7, 11]  # first and last frame included


def test_short_clips_repeat_their_last_frame(tmp_path):
    write_clip(tmp_path, "short.gif", "gif", bar_frames(3), "a bar")
    frames = ClipFolder(tmp_path, num_frames=6, size=64)[0]["frames"]
    assert [bar_index(f) for f in frames] == [0, 1, 2, 2, 2, 2]


def test_pick_frames():
    assert pick_frames(10, 10) == list(range(10))
    assert pick_frames(19, 10) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert pick_frames(2, 4) == [0, 1, 1, 1]


def test_frame_folders_are_read_in_natural_order(tmp_path):
    folder = tmp_path / "walk"
    folder.mkdir()
    for i, frame in enumerate(bar_frames(11)):
        frame.save(folder / f"{i}.png")  # 0.png ... 10.png: "10" sorts before "2" as text
    (tmp_path / "walk.txt").write_text("a bar walking right")
    frames = ClipFolder(tmp_path, num_frames=11, size=64)[0]["frames"]
    assert [bar_index(f) for f in frames] == list(range(11))


@pytest.mark.parametrize("fmt, name", [("png", "square"), ("gif", "square.gif")])
def test_transparent_non_square_frames_become_padded_squares_on_white(tmp_path, fmt, name):
    """96 x 48 RGBA frames, as a drawing app exports them (GIF: palette transparency):
    transparent paper must turn white, not black, and the frame is padded to a square."""
    frames = []
    for x in (10, 40):
        frame = Image.new("RGBA", (96, 48), (0, 0, 0, 0))  # transparent black paper
        ImageDraw.Draw(frame).rectangle((x, 12, x + 23, 35), fill=(0, 0, 0, 255))  # 24 x 24
        frames.append(frame)
    write_clip(tmp_path, name, fmt, frames, "a square moving right")
    out = ClipFolder(tmp_path, num_frames=2, size=48)[0]["frames"].numpy()  # (2, 48, 48)
    assert out[:, :12].min() > 0.95 and out[:, -12:].min() > 0.95  # white padding bands
    ink = out[0] < 0.5
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert abs(height - 12) <= 1 and abs(width - 12) <= 1  # still square: 24 px halved
    assert (out[0] > 0.95).mean() > 0.85  # the rest is white paper


def test_real_transparent_sketches_as_frame_folders(tmp_path):
    folder = tmp_path / "fish"
    folder.mkdir()
    for i, name in enumerate(["fish.png", "cat.png", "camel.png"]):  # RGBA, two sizes
        shutil.copy(shared_sketch(name), folder / f"frame_{i}.png")
    (tmp_path / "fish.txt").write_text("a fish swimming left")
    frames = ClipFolder(tmp_path, num_frames=3, size=64)[0]["frames"]
    assert frames.shape == (3, 64, 64)
    for frame in frames:
        assert float(frame[0].min()) > 0.95 and float(frame[:, 0].min()) > 0.95  # paper edges
        assert float(frame.min()) < 0.3  # dark strokes
        assert float((frame > 0.9).float().mean()) > 0.7


def test_captions_from_jsonl_and_txt_with_jsonl_winning(tmp_path):
    write_clip(tmp_path, "a.gif", "gif", bar_frames(3), "the txt caption of a")
    write_clip(tmp_path, "b.gif", "gif", bar_frames(4), "the txt caption of b")
    write_clip(tmp_path, "c", "png", bar_frames(2), None)
    lines = [{"file": "a.gif", "caption": "a from jsonl"}, {"file": "c", "caption": "c frames"}]
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    (tmp_path / "README.md").write_text("not a clip, ignored")
    (tmp_path / ".hidden.gif").write_bytes(b"ignored too")
    dataset = ClipFolder(tmp_path, num_frames=2, size=32)
    assert [dataset[i]["caption"] for i in range(len(dataset))] == [
        "a from jsonl", "the txt caption of b", "c frames"
    ]


def test_write_dataset_round_trip_and_batching(tmp_path):
    root = write_dataset(tmp_path / "synth", num_clips=4, seed=3, size=64, num_frames=5)
    dataset = ClipFolder(root, num_frames=5, size=64)
    animator = SketchAnimator(size=64, num_frames=5, seed=3)
    for index in range(4):
        clip = animator.clip(index)
        item = dataset[index]
        assert item["caption"] == clip.caption
        np.testing.assert_allclose(item["frames"].numpy(), clip.frames, atol=1 / 255 + 1e-6)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["frames"].shape == (3, 5, 64, 64) and len(batch["caption"]) == 3


# -- bad datasets: one line naming the file and the problem -------------------------------------


def good_clip(root: Path) -> None:
    write_clip(root, "good.gif", "gif", bar_frames(3), "a good clip")


def corrupt(root: Path) -> None:
    (root / "broken.gif").write_bytes(b"GIF89a" + bytes(range(200)))
    (root / "broken.txt").write_text("a broken clip")


def truncated(root: Path) -> None:
    path = write_clip(root, "broken.gif", "gif", bar_frames(6), "a cut-off clip")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty_file(root: Path) -> None:
    (root / "broken.webp").write_bytes(b"")
    (root / "broken.txt").write_text("an empty clip")


def not_a_video(root: Path) -> None:
    (root / "broken.mp4").write_bytes(b"this is text, not H.264" * 20)
    (root / "broken.txt").write_text("a broken video")


def one_frame(root: Path) -> None:
    write_clip(root, "broken.gif", "gif", bar_frames(1), "a still")


def empty_frame_folder(root: Path) -> None:
    (root / "broken").mkdir()
    (root / "broken.txt").write_text("no frames")


def corrupt_frame(root: Path) -> None:
    write_clip(root, "broken", "png", bar_frames(3), "a clip with a bad frame")
    (root / "broken" / "frame_001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)


def no_caption(root: Path) -> None:
    write_clip(root, "broken.gif", "gif", bar_frames(3), None)


def caption_names_missing_clip(root: Path) -> None:
    line = {"file": "broken.gif", "caption": "this clip is gone"}
    (root / "captions.jsonl").write_text(json.dumps(line) + "\n")


def caption_line_not_json(root: Path) -> None:
    (root / "captions.jsonl").write_text('{"file": "good.gif", "caption": "ok"}\n{"file": broken\n')


def caption_names_non_clip(root: Path) -> None:
    (root / "broken.md").write_text("notes")
    (root / "captions.jsonl").write_text(json.dumps({"file": "broken.md", "caption": "x"}) + "\n")


@pytest.mark.parametrize(
    "make, named, problem",
    [
        (corrupt, "broken.gif", "cannot be read"),
        (truncated, "broken.gif", "cannot be read"),
        (empty_file, "broken.webp", "empty"),
        (not_a_video, "broken.mp4", "cannot be read"),
        (one_frame, "broken.gif", "has 1 frame(s), needs at least 2"),
        (empty_frame_folder, "broken", "has 0 frame(s)"),
        (corrupt_frame, "broken", "cannot be read"),
        (no_caption, "broken.gif", "no caption"),
        (caption_names_missing_clip, "captions.jsonl:1", "'broken.gif', which is not in"),
        (caption_line_not_json, "captions.jsonl:2", "not a JSON line"),
        (caption_names_non_clip, "captions.jsonl:1", "not a clip"),
    ],
)
def test_bad_data_is_one_line_naming_the_file(tmp_path, make, named, problem):
    good_clip(tmp_path)
    make(tmp_path)
    with pytest.raises(UsageError) as caught:
        ClipFolder(tmp_path, num_frames=4, size=32)
    message = str(caught.value)
    assert "\n" not in message
    assert named in message and problem in message, message
    assert "problems" not in message  # a single problem is not counted


def test_every_problem_is_counted_and_the_first_reported(tmp_path):
    good_clip(tmp_path)
    corrupt(tmp_path)  # broken.gif
    (tmp_path / "nocaption").mkdir()
    bar_frames(1)[0].save(tmp_path / "nocaption" / "0.png")  # no caption and too short
    with pytest.raises(UsageError, match=r"broken\.gif: cannot be read.*\(1 of 3 problems in"):
        ClipFolder(tmp_path, num_frames=4, size=32)


def test_empty_or_missing_folder(tmp_path):
    (tmp_path / "captions.jsonl").write_text("")
    with pytest.raises(UsageError, match="no clips in"):
        ClipFolder(tmp_path, num_frames=4, size=32)
    with pytest.raises(UsageError, match="does not exist"):
        ClipFolder(tmp_path / "nowhere", num_frames=4, size=32)


def test_min_frames_is_configurable(tmp_path):
    write_clip(tmp_path, "still.gif", "gif", bar_frames(1), "a still bar")
    frames = ClipFolder(tmp_path, num_frames=3, size=32, min_frames=1)[0]["frames"]
    assert frames.shape == (3, 32, 32)
    torch.testing.assert_close(frames[0], frames[2])


# -- on the fly --------------------------------------------------------------------------------


def test_animator_clips_are_the_animator_clips_by_position():
    clips = AnimatorClips(3, num_frames=4, resolution=32, seed=6)
    animator = SketchAnimator(size=32, num_frames=4, seed=6)
    assert len(clips) == 3
    for index in (2, 0, 1):  # map-style: item i is clip i, in any order
        item = clips[index]
        assert item["caption"] == animator.clip(index).caption
        np.testing.assert_array_equal(item["frames"].numpy(), animator.clip(index).frames)
