"""The example third-party plugin, installed for real: found through its entry point, listed
by ``flipsketch plugins``, switched off by ``FLIPSKETCH_LOAD_PLUGINS``, and its sheets slice
back into the frames."""

from __future__ import annotations

import importlib.metadata
import json
import math

import numpy as np
import pytest
from PIL import Image

from flipsketch.frames.writers import check_output_path, save_frames
from flipsketch.plugins import PluginManager

DISTRIBUTION = "flipsketch-spritesheet"


@pytest.fixture(scope="module")
def plugin_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{DISTRIBUTION} is not installed; run "
                    f"'pip install -e plugins/flipsketch-spritesheet --no-deps'")


def test_listed_by_the_cli_with_its_version(cli, fresh_plugins, monkeypatch, plugin_version):
    monkeypatch.delenv("FLIPSKETCH_LOAD_PLUGINS", raising=False)
    result = cli("plugins", "--json")  # with plugins loaded afresh, from this environment
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    ours = [p for p in listed["plugins"] if p["distribution"] == DISTRIBUTION]
    assert len(ours) == 1
    assert ours[0]["version"] == plugin_version and ours[0]["builtin"] is False
    assert listed["stages"]["writer"]["implementations"]["spritesheet"] == ours[0]["name"]
    assert listed["writer_suffix_clashes"] == []  # ".sheet.png" is longer than ".png", not equal


def test_switched_off_by_an_empty_load_list(monkeypatch, plugin_version):
    monkeypatch.setenv("FLIPSKETCH_LOAD_PLUGINS", "")
    off = PluginManager().describe()
    assert not any(p["distribution"] == DISTRIBUTION for p in off["plugins"])
    assert "spritesheet" not in off["stages"]["writer"]["implementations"]
    assert "gif" in off["stages"]["writer"]["implementations"]  # built-ins always load


def frames_of(n: int, mode: str) -> list[Image.Image]:
    """n distinct 40 x 30 frames: a dot at a different place in each."""
    rng = np.random.default_rng(n)
    frames = []
    for i in range(n):
        px = np.full((30, 40), 255, np.uint8)
        px[rng.integers(0, 25), :] = 0
        px[:, i * 3 % 40] = 0
        frame = Image.fromarray(px)
        if mode == "RGBA":
            layer = Image.new("RGBA", frame.size, (0, 0, 0, 0))
            layer.putalpha(frame.point(lambda v: 255 - v))
            frame = layer
        frames.append(frame)
    return frames


@pytest.mark.parametrize("count,mode", [(5, "L"), (10, "RGBA"), (1, "L")])
def test_sheet_tiles_are_the_frames(tmp_path, monkeypatch, plugin_version, count, mode):
    monkeypatch.delenv("FLIPSKETCH_LOAD_PLUGINS", raising=False)
    manager = PluginManager()  # entry points, as an installed flipsketch sees them
    frames = frames_of(count, mode)
    # Named explicitly, so that this checks the sheet itself; the suffix routing is below.
    out = save_frames(frames, tmp_path / "walk.sheet.png", fps=12, writer="spritesheet",
                      manager=manager)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.sheet.png"]

    with Image.open(out) as sheet:
        sheet.load()
        layout = json.loads(sheet.text["flipsketch:spritesheet"])
        columns = math.ceil(math.sqrt(count))
        assert layout["columns"] == columns and layout["count"] == count
        assert layout["rows"] == math.ceil(count / columns)
        assert (layout["frame_width"], layout["frame_height"], layout["fps"]) == (40, 30, 12)
        assert sheet.mode == mode  # transparency is kept when the frames have it
        step_x, step_y = 40 + layout["spacing"], 30 + layout["spacing"]
        assert sheet.size == (columns * step_x - layout["spacing"],
                              layout["rows"] * step_y - layout["spacing"])
        for i, frame in enumerate(frames):
            x, y = (i % columns) * step_x, (i // columns) * step_y
            tile = sheet.crop((x, y, x + 40, y + 30))
            assert np.array_equal(np.asarray(tile), np.asarray(frame)), i


def test_sheet_suffix_beats_png_but_plain_png_stays_apng(tmp_path, monkeypatch, plugin_version):
    monkeypatch.delenv("FLIPSKETCH_LOAD_PLUGINS", raising=False)
    manager = PluginManager()
    out = save_frames(frames_of(3, "L"), tmp_path / "x.sheet.png", manager=manager)
    with Image.open(out) as sheet:
        assert "flipsketch:spritesheet" in sheet.text
    assert check_output_path(tmp_path / "a.png", manager=manager).name == "apng"
