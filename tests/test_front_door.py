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


# -- the arguments in the wrong order ----------------------------------------------------------
def one_line_error(result) -> str:
    """The one ``error:`` line of a refused command (exit 2, nothing else on stderr)."""
    assert result.returncode == 2, result
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and "Traceback" not in result.stderr
    return line


def test_a_prompt_without_a_drawing_names_generate(cli, tmp_path):
    line = one_line_error(cli("animate", "a fish swimming to the right", "-o", "b.gif",
                              cwd=tmp_path))
    assert "flipsketch generate 'a fish swimming to the right'" in line
    assert "Missing argument" not in line
    assert list(tmp_path.iterdir()) == []


def test_a_drawing_without_a_prompt_asks_for_the_prompt(cli, tmp_path):
    for drawing in ("example:fish", str(EXAMPLES_DIR / "cat.png")):
        line = one_line_error(cli("animate", drawing, cwd=tmp_path))
        assert "missing the prompt after the drawing" in line
        assert f"flipsketch animate {drawing} 'a fish swimming'" in line
    assert list(tmp_path.iterdir()) == []


def test_a_sentence_where_the_drawing_goes_says_so(cli, tmp_path):
    line = one_line_error(cli("animate", "a fish swimming", "to the right", "-o", "b.gif",
                              cwd=tmp_path))
    assert "the drawing 'a fish swimming' does not exist and reads like a sentence" in line
    assert "flipsketch generate PROMPT" in line
    # A file name with spaces is a missing file, not a sentence.
    line = one_line_error(cli("animate", "my fish 2.png", "a fish", cwd=tmp_path))
    assert "sketch 'my fish 2.png' does not exist" in line and "sentence" not in line
