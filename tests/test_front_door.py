"""What a newcomer meets first (issue 25): the drawings shipped as ``example:NAME``, the README's
first command run as written in an empty folder, and the messages of the commands' front door.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw

from flipsketch.errors import FlipSketchWarning, UsageError
from flipsketch.frames.examples import EXAMPLES_DIR, example_names, resolve_sketch
from flipsketch.frames.images import line_art_measures, load_sketch, warn_unless_line_art
from flipsketch.training.synth import SketchAnimator

from testing import code_blocks, commands, read_animation

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


# -- line drawings, and what is not one --------------------------------------------------------
FAST = ["--steps", "3", "--frames", "3", "--size", "64"]


def photograph(size: int = 384, seed: int = 0) -> Image.Image:
    """A photograph's statistics: smooth colour gradients, soft blobs of light and shade, and
    sensor noise; no strokes, no white paper."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([0.5 + 0.3 * np.sin(6 * x + 1), 0.4 + 0.3 * np.cos(5 * y),
                    0.3 + 0.4 * x * y], axis=-1)
    for _ in range(30):
        cx, cy, r = rng.random(), rng.random(), rng.uniform(0.03, 0.2)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)
        rgb += blob[..., None] * rng.uniform(-0.4, 0.4, 3)
    rgb += rng.normal(0, 0.05, rgb.shape)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def circuit_board(size: int = 384, seed: int = 0) -> Image.Image:
    """A photo of a circuit board (the issue's example): a dark green board, light pads and
    chips, thin bright traces."""
    rng = np.random.default_rng(seed)
    board = Image.new("RGB", (size, size), (20, 90, 40))
    draw = ImageDraw.Draw(board)
    for _ in range(60):
        x0, y0 = rng.integers(0, size - 20, 2).tolist()
        w, h = rng.integers(4, 40, 2).tolist()
        draw.rectangle((x0, y0, x0 + w, y0 + h),
                       fill=tuple(rng.choice([(200, 200, 190), (30, 30, 30), (180, 150, 60)])))
    for _ in range(40):
        draw.line(tuple(rng.integers(0, size, 4).tolist()), fill=(90, 170, 90), width=2)
    noisy = np.asarray(board, np.float32) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def painting(size: int = 384, seed: int = 0) -> Image.Image:
    """A filled painting: flat colour fields over a coloured ground, no outlines."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (90, 140, 200))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        draw.polygon([tuple(rng.integers(0, size, 2).tolist()) for _ in range(5)],
                     fill=tuple(rng.integers(0, 256, 3).tolist()))
    return image


def warnings_of(image: Image.Image) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_unless_line_art(image, "sketch 'x'")
    return [str(w.message) for w in caught if issubclass(w.category, FlipSketchWarning)]


@pytest.mark.parametrize("name", NAMES)
def test_a_real_drawing_is_line_art(name):
    image = load_sketch(f"example:{name}")
    measures = line_art_measures(image)
    assert measures.problem() is None, measures
    assert warnings_of(image) == []


@pytest.mark.parametrize("size,doodles", [(128, 1.0), (128, 0.0), (64, 0.5)])
def test_synthetic_doodles_are_line_art(size, doodles):
    animator = SketchAnimator(size=size, doodle_share=doodles)
    for i in range(150):
        still = Image.fromarray((animator.still(i) * 255).round().astype(np.uint8))
        measures = line_art_measures(still)
        assert measures.problem() is None, (i, measures)


@pytest.mark.parametrize("make", [photograph, circuit_board, painting])
def test_photographs_and_paintings_are_not_line_art(make):
    image = make()
    [message] = warnings_of(image)
    assert "sketch 'x' does not look like a line drawing" in message
    assert "FlipSketch animates line drawings" in message and "magick photo.jpg" in message
    assert line_art_measures(image).problem() is not None


def test_a_drawing_on_grey_paper_is_still_line_art():
    """The paper's level is measured, not assumed: a scan on grey paper is a drawing."""
    scan = Image.new("L", (400, 400), 190)
    draw = ImageDraw.Draw(scan)
    draw.ellipse((60, 60, 340, 300), outline=40, width=4)
    draw.line((100, 350, 300, 350), fill=40, width=3)
    assert line_art_measures(scan).problem() is None


def test_animating_a_photograph_warns_once_and_goes_on(cli, tiny_model_dir, tmp_path):
    photograph().save(tmp_path / "board.jpg", quality=90)
    result = cli("animate", tmp_path / "board.jpg", "a circuit board", "--model",
                 tiny_model_dir, "-o", tmp_path / "board.gif", *FAST)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "board.gif").exists()
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1, result.stderr
    assert warned[0].startswith(f"warning: sketch '{tmp_path / 'board.jpg'}' does not look like "
                                "a line drawing (")
    assert "trace its outlines" in warned[0]


def test_animating_a_drawing_gives_no_warning(cli, tiny_model_dir, tmp_path):
    result = cli("animate", "example:cat", "a cat", "--model", tiny_model_dir,
                 "-o", tmp_path / "cat.gif", *FAST)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


# -- best of K: one naming rule; lines and tables whole ----------------------------------------
@pytest.mark.parametrize("output,samples,keep,written", [
    ("cat.gif", 3, 1, ["cat-1.gif"]),  # the best is <name>-1, as --keep's help says
    ("cat.gif", 2, None, ["cat-1.gif", "cat-2.gif"]),
    ("frames", 3, 1, ["frames-1"]),  # a folder of PNG frames: the same rule
    ("frames", 2, 2, ["frames-1", "frames-2"]),
    ("cat.gif", 1, 1, ["cat.gif"]),  # one sample: nothing to number
])
def test_samples_and_keep_name_files_and_folders_by_one_rule(cli, tiny_model_dir, tmp_path,
                                                             output, samples, keep, written):
    keeping = ["--keep", str(keep)] if keep is not None else []
    result = cli("animate", "example:cat", "a cat", "--model", tiny_model_dir, "--samples",
                 str(samples), *keeping, "-o", tmp_path / output, "--json", *FAST)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == written
    assert json.loads(result.stdout)["outputs"] == [str(tmp_path / name) for name in written]
    help_text = cli("animate", "--help").stdout
    assert "<name>-1 is the best, even with --keep 1" in " ".join(help_text.split())


def test_the_score_line_and_the_wrote_line_are_never_broken(cli, tiny_model_dir, tmp_path):
    """Rich used to wrap at 80 columns, inside a value: '0.551 \\n(dropped)'."""
    result = cli("animate", "example:cat", "a cat", "--model", tiny_model_dir, "--samples", "6",
                 "--keep", "1", "-o", tmp_path / "a-rather-long-output-name-for-a-cat.gif", *FAST)
    assert result.returncode == 0, result.stderr
    [scores] = [line for line in result.stderr.splitlines() if line.startswith("kept the best")]
    assert len(scores) > 80 and scores.count("(dropped)") == 5
    assert len(re.findall(r"\b\d\.\d{3}\b", scores)) == 6
    [wrote] = [line for line in result.stderr.splitlines() if line.startswith("wrote")]
    assert f"{tmp_path / 'a-rather-long-output-name-for-a-cat-1.gif'} (3 frames, 64 px)" in wrote


def test_piped_plugins_table_keeps_whole_module_names(tmp_path):
    """``flipsketch plugins > file`` in a real process: the table is as wide as its content,
    whatever COLUMNS says, and --help names --json as the machine-readable form."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    listing = tmp_path / "plugins.txt"
    with open(listing, "w") as out:
        done = subprocess.run([sys.executable, "-m", "flipsketch", "plugins"], stdout=out,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    text = listing.read_text(encoding="utf-8")
    for module in ("flipsketch.builtins.backbone", "flipsketch.builtins.inversion",
                   "flipsketch.builtins.postprocess", "flipsketch.builtins.interpolate"):
        assert module in text
    assert "…" not in text
    assert max(map(len, text.splitlines())) > 80  # wider than the old fixed 80 columns


# -- the suite cleans up after itself ----------------------------------------------------------
@pytest.mark.slow
def test_the_suite_leaves_nothing_in_the_temporary_folder_or_the_working_folder(tmp_path):
    """A run of a Hypothesis property (whose caches, by default ./.hypothesis, used to go to
    a flipsketch-hypothesis folder in the system's temporary folder) that also imports
    diffusers (torch's compiler cache folder, torchinductor_USER): afterwards the temporary
    folder holds pytest's own folder only, and the working folder nothing."""
    system_temp, workdir = tmp_path / "tmp", tmp_path / "work"
    system_temp.mkdir()
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "HYPOTHESIS_", "TORCHINDUCTOR_"))}
    env["TMPDIR"] = str(system_temp)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_fuzz.py"), "-k", "test_override_parser"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
    assert list(workdir.iterdir()) == []
    [pytest_folder] = list(system_temp.iterdir())
    assert pytest_folder.name.startswith("pytest-of-")
    # Hypothesis did keep caches: inside pytest's folder.
    assert list(pytest_folder.glob("pytest-*/hypothesis0/*"))


# -- the README's first command, as written ----------------------------------------------------
@pytest.mark.slow  # the shipped model's load and ten 512-px frames: 10-17 s on 2 busy cores
def test_the_readme_first_command_runs_as_written_in_an_empty_folder(cli, tmp_path):
    """Right after the install block comes the main job; it runs as written (the shipped tiny
    model, 10 frames, 512 px) in a folder holding nothing, with only --steps 3 added to keep
    the test cheaper (the README's 25 steps took 68 s on 2 busy cores); frame 1 is close to
    the drawing, as the README says (measured at the model's 128 px). test_docs runs the same
    block again, with its quick sampler, among the others."""

    from flipsketch.evaluation.metrics import stroke_fscore
    from flipsketch.frames.images import images_to_array, to_grey_square

    install, first = [b for b in code_blocks(ROOT / "README.md") if b.lang == "bash"][:2]
    assert "pip install" in install.code and install.not_tested
    assert first.not_tested is None
    [words] = commands(first.code)
    assert words == ["flipsketch", "animate", "example:fish", "a fish swimming to the right",
                     "-o", "fish.gif"]
    result = cli(*words[1:], "--steps", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["fish.gif"]
    assert "warning" not in result.stderr
    frames = read_animation(tmp_path / "fish.gif")
    assert frames.shape == (10, 512, 512)
    drawing = images_to_array([to_grey_square(load_sketch("example:fish"), 128)])[0]
    first_frame = images_to_array([Image.fromarray(frames[0]).resize((128, 128),
                                                                   Image.BILINEAR)])[0]
    assert stroke_fscore(drawing, first_frame) > 0.6


# -- the other front ends: batch manifests and recipes take example:NAME and warn on photos --


def test_batch_manifests_take_example_drawings_and_warn_on_photos(tmp_path):
    from flipsketch.batch import ManifestError, read_manifest

    photograph().save(tmp_path / "photo.png")
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("sketch,prompt,output\nexample:fish,a fish swimming,a.gif\n"
                        "photo.png,a photo moving,b.gif\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jobs = read_manifest(manifest).jobs
    assert jobs[0].sketch == resolve_sketch("example:fish")
    said = [str(w.message) for w in caught if issubclass(w.category, FlipSketchWarning)]
    assert len(said) == 1 and "photo.png" in said[0] and "line drawing" in said[0]
    manifest.write_text("sketch,prompt,output\nexample:dragon,a dragon,a.gif\n")
    with pytest.raises(ManifestError, match=r"jobs.csv:2: column 'sketch': there is no example "
                                            r"drawing 'dragon'; the examples are example:camel"):
        read_manifest(manifest)


def test_recipes_take_example_drawings_and_warn_on_photos(tmp_path):
    from flipsketch.recipes.parsing import load_recipe

    photograph().save(tmp_path / "photo.png")
    recipe = tmp_path / "r.yaml"
    for sketch, warned in (("example:cat", False), ("photo.png", True)):
        recipe.write_text(f"version: 1\nsteps:\n  - name: a\n    type: animate\n"
                          f"    sketch: {sketch}\n    prompt: it moves\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = load_recipe(recipe)
        said = [w for w in caught if issubclass(w.category, FlipSketchWarning)]
        assert len(said) == int(warned), [str(w.message) for w in said]
        if not warned:
            assert loaded.steps[0].params["sketch"] == resolve_sketch(sketch)
    recipe.write_text("version: 1\nsteps:\n  - name: a\n    type: animate\n"
                      "    sketch: example:dragon\n    prompt: it moves\n")
    with pytest.raises(UsageError, match="r.yaml:5.*there is no example drawing 'dragon'"):
        load_recipe(recipe)
