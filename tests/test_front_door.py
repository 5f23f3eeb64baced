"""What a newcomer meets first (issue 25): the drawings shipped as ``example:NAME``, the README's
first command run as written in an empty folder, and the messages of the commands' front door.
"""

from __future__ import annotations

import fnmatch
import sys

import pytest

from flipsketch.errors import UsageError
from flipsketch.frames.examples import EXAMPLES_DIR, example_names, resolve_sketch
from flipsketch.frames.images import load_sketch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None

ROOT = EXAMPLES_DIR.parents[2]
NAMES = ["camel", "cat", "cloud", "fish", "horse"]


# -- the example drawings ----------------------------------------------------------------------
def test_the_five_drawings_ship_with_their_licence():
    assert example_names() == NAMES
    notice = (EXAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    assert "Copyright (c) 2024 Hmrishav Bandyopadhyay" in notice
    assert "Permission is hereby granted, free of charge" in notice  # the MIT text itself
    for name in NAMES:
        assert f"example:{name}" in notice


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11+")
def test_the_package_data_globs_take_every_example_file():
    """A wheel holds what these globs match: every drawing and its licence notice."""
    with open(ROOT / "pyproject.toml", "rb") as file:
        globs = tomllib.load(file)["tool"]["setuptools"]["package-data"]["flipsketch"]
    for path in EXAMPLES_DIR.iterdir():
        relative = path.relative_to(EXAMPLES_DIR.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, glob) for glob in globs), relative


@pytest.mark.parametrize("name", NAMES)
def test_example_names_load_as_drawings(name):
    assert resolve_sketch(f"example:{name}") == EXAMPLES_DIR / f"{name}.png"
    assert resolve_sketch(f"example:{name}.png") == EXAMPLES_DIR / f"{name}.png"
    image = load_sketch(f"example:{name}")
    assert min(image.size) >= 256


def test_an_unknown_example_lists_the_examples():
    for value in ("example:fsh", "example:", "example:../cat"):
        with pytest.raises(UsageError) as caught:
            resolve_sketch(value)
        assert str(caught.value).endswith(
            "the examples are example:camel, example:cat, example:cloud, example:fish, "
            "example:horse")


def test_a_missing_drawing_points_to_the_examples(cli, tmp_path):
    result = cli("animate", tmp_path / "fish.png", "a fish swimming", "--steps", "2")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "does not exist" in line and "example:fish" in line
