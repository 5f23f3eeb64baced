"""YAML recipes: format and validation, the step cache, the built-in steps, the CLI.

Sampler steps run the tiny random-weight model of ``conftest`` (2 steps, 4 frames), the video
step the tiny models of ``test_video``; a third-party step type registered through the real
plugin hook stands in where frames are needed without a model.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw, ImageFont

from flipsketch import hookimpl
from flipsketch.api import animate, load_pipeline, postprocess
from flipsketch.errors import FlipSketchError, UsageError
from flipsketch.frames.images import render_text
from flipsketch.frames.writers import check_output_path, save_frames
from flipsketch.plugins import PluginManager
from flipsketch.recipes import Clip, Field, RecipeError, StepType, load_recipe, run_recipe
from flipsketch.recipes.cache import StepCache
from flipsketch.recipes.parsing import bundled_recipes
from flipsketch.recipes.schema import CACHE_DIR

from testing import read_animation, save_tiny_video_models, shared_sketch

FAST = ["num_inference_steps=2", "num_frames=4"]


def write(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def statuses(reports) -> dict[str, str]:
    return {r.name: r.status for r in reports}


# -- a third-party step type, registered through the real hook ---------------------------------
def _moving_line(ctx, step) -> list[Clip]:
    """A vertical stroke crossing a 32 x 32 frame: frames without a model."""
    if step.params["fail"]:
        raise RuntimeError("the line broke")
    frames = np.ones((step.params["frames"], 32, 32), np.float32)
    for i, frame in enumerate(frames):
        frame[4:28, 4 + 3 * i] = 0.0
    return [Clip(frames)]


class LinePlugin:
    @hookimpl
    def register_recipe_steps(self, register) -> None:
        register("line", StepType(_moving_line, {"frames": Field(int, default=5),
                                                 "fail": Field(bool, default=False)}))


@pytest.fixture
def manager() -> PluginManager:
    manager = PluginManager()
    manager.register(LinePlugin(), name="line-plugin")
    return manager


# -- bundled recipes ---------------------------------------------------------------------------
BUNDLED = ["word-morph.yaml", "extrapolate.yaml", "sketch-to-video.yaml"]


def test_bundled_recipes_are_found_by_bare_name_and_validate():
    assert set(BUNDLED) <= set(bundled_recipes())
    for name in BUNDLED:
        recipe = load_recipe(name)
        assert recipe.path == bundled_recipes()[name] and recipe.display == name
        assert recipe.description
    assert load_recipe("word-morph").path == bundled_recipes()["word-morph.yaml"]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_recipes_explain_every_key(name):
    """Each key is explained by a comment at its first use (same line or just above)."""
    lines = bundled_recipes()[name].read_text(encoding="utf-8").splitlines()
    seen: set[str] = set()
    for i, line in enumerate(lines):
        match = re.match(r"^\s*(?:- )?([A-Za-z_][\w-]*):", line)
        if not match or match.group(1) in seen:
            continue
        seen.add(match.group(1))
        assert "#" in line or lines[i - 1].strip().startswith("#"), f"{name}:{i + 1}: {line}"


@pytest.fixture(scope="session")
def tiny_video_dir(tmp_path_factory):
    return save_tiny_video_models(tmp_path_factory.mktemp("recipe-video-models"))


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_recipe_runs_end_to_end(name, tiny_model_dir, tiny_video_dir, tmp_path, cli):
    data = yaml.safe_load(bundled_recipes()[name].read_text(encoding="utf-8"))
    steps = {s["name"]: s for s in data["steps"]}
    args = ["recipe", "run", name, "-o", "out", "--json", "--set", f"model={tiny_model_dir}"]
    for override in FAST:
        args += ["--set", override]
    if name == "sketch-to-video.yaml":
        for key, value in dataclasses.asdict(tiny_video_dir).items():
            args += ["--set", f"steps.real.{key}={value}"]
        args += ["--set", "steps.real.size=32", "--set", "steps.real.num_inference_steps=2"]
    result = cli(*args, cwd=tmp_path)  # "out" is relative to where the command runs
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [s["status"] for s in summary["steps"]] == ["ran"] * len(data["steps"])

    # Frames each output must hold, from the recipe's own structure (4 frames per clip).
    if name == "word-morph.yaml":
        expected = {"word-morph.gif": 4}
    elif name == "extrapolate.yaml":
        expected = {"ballerina.gif": 4 * len(steps["dance"]["prompts"]) - (
            len(steps["dance"]["prompts"]) - 1)}
    else:
        smooth = (4 - 1) * steps["smooth"]["factor"] + 1
        expected = {"fish-sketch.gif": 4, "fish-smooth.gif": smooth, "red-fish.mp4": smooth}
    written = {Path(p).name for p in summary["outputs"]}
    assert set(expected) < written and any(n.endswith(".contact.png") for n in written)
    for file, frames in expected.items():
        assert len(read_animation(tmp_path / "out" / file)) == frames, file
    for file in written:
        assert (tmp_path / "out" / file).stat().st_size > 0


# -- extrapolation -----------------------------------------------------------------------------
def test_extrapolation_continues_each_clip_from_the_last_frame(tiny_model_dir, tmp_path):
    shutil.copy(shared_sketch("cat.png"), tmp_path / "cat.png")
    prompts = ["the cat sits", "the cat stands up", "the cat walks away"]
    path = write(tmp_path, f"""
version: 1
defaults: {{num_frames: 4, num_inference_steps: 2}}
steps:
  - name: long
    type: extrapolate
    sketch: cat.png
    prompts: {json.dumps(prompts)}
    seeds: [5, 9, 2]
""")
    recipe = load_recipe(path, [f"model={tiny_model_dir}"])
    run_recipe(recipe, tmp_path / "out")
    (clip,) = StepCache(tmp_path / "out").load("long")
    stitched = clip.frames  # (F, H, W)
    assert len(stitched) == 3 * 4 - 2  # each boundary frame once

    pipe = load_pipeline(str(tiny_model_dir))
    settings = recipe.steps[0].settings
    first = animate(pipe, prompts[0], tmp_path / "cat.png", dataclasses.replace(settings, seed=5))
    np.testing.assert_allclose(stitched[:4], first[0].frames, atol=1e-5)
    for k, seed in ((1, 9), (2, 2)):
        boundary = 3 * k  # segment k-1's last frame is the frame segment k starts from
        start = postprocess(stitched[boundary][None], "binarize", size=pipe.model_resolution)[0]
        segment = animate(pipe, prompts[k], start, dataclasses.replace(settings, seed=seed))
        np.testing.assert_allclose(stitched[boundary + 1:boundary + 4], segment[0].frames[1:],
                                   atol=1e-5)


def test_extrapolation_seeds_must_match_prompts(tmp_path):
    path = write(tmp_path, """
version: 1
steps:
  - name: long
    type: extrapolate
    prompts: [a, b, c]
    seeds: [1, 2]
""")
    with pytest.raises(RecipeError, match=r"recipe.yaml:6: steps\[0\].seeds: has 2 seeds"):
        load_recipe(path)


# -- the cache ---------------------------------------------------------------------------------
def test_cache_skips_unchanged_steps_and_reruns_changed_ones(tiny_model_dir, tmp_path):
    shutil.copy(shared_sketch("cat.png"), tmp_path / "drawing.png")
    path = write(tmp_path, """
version: 1
defaults: {num_frames: 4, num_inference_steps: 2}
steps:
  - {name: anim, type: animate, sketch: drawing.png, prompt: the cat walks}
  - {name: smooth, type: interpolate, input: anim, factor: 2}
  - {name: gif, type: write, input: smooth, path: cat.gif}
  - {name: grey, type: write, input: anim, path: grey.webp, postprocess: raw}
""")
    out = tmp_path / "out"

    def run(*overrides: str, fresh: bool = False) -> dict[str, str]:
        recipe = load_recipe(path, [f"model={tiny_model_dir}", *overrides])
        return statuses(run_recipe(recipe, out, fresh=fresh))

    ran, cached = "ran", "cached"
    assert run() == {"anim": ran, "smooth": ran, "gif": ran, "grey": ran}
    gif = (out / "cat.gif").read_bytes()
    assert len(read_animation(out / "cat.gif")) == (4 - 1) * 2 + 1
    mtime = (out / "cat.gif").stat().st_mtime_ns

    assert run() == {"anim": cached, "smooth": cached, "gif": cached, "grey": cached}
    assert (out / "cat.gif").stat().st_mtime_ns == mtime and (out / "cat.gif").read_bytes() == gif

    # A changed key reruns its step and every step downstream of it, nothing else.
    assert run("steps.smooth.factor=3") == {"anim": cached, "smooth": ran, "gif": ran,
                                            "grey": cached}
    assert len(read_animation(out / "cat.gif")) == (4 - 1) * 3 + 1

    # A changed input file (same name, new drawing) reruns everything that depends on it.
    shutil.copy(shared_sketch("fish.png"), tmp_path / "drawing.png")
    assert run("steps.smooth.factor=3") == {"anim": ran, "smooth": ran, "gif": ran, "grey": ran}

    # A deleted output is written again from the cached frames; --fresh redoes everything.
    (out / "grey.webp").unlink()
    assert run("steps.smooth.factor=3") == {"anim": cached, "smooth": cached, "gif": cached,
                                            "grey": ran}
    assert run("steps.smooth.factor=3", fresh=True) == {"anim": ran, "smooth": ran, "gif": ran,
                                                        "grey": ran}


LINE_RECIPE = """
version: 1
steps:
  - {name: line, type: line}
  - {name: gif, type: write, input: line, path: line.gif}
  - {name: broken, type: line, fail: true}
  - {name: after, type: write, input: broken, path: after.gif}
"""


def test_failed_step_is_named_and_earlier_outputs_stay(manager, tmp_path):
    path = write(tmp_path, LINE_RECIPE)
    out = tmp_path / "out"
    with pytest.raises(FlipSketchError) as exc:
        run_recipe(load_recipe(path, manager=manager), out, manager=manager)
    assert "step 'broken' (line) failed: the line broke" in str(exc.value)
    assert exc.value.exit_code == 1
    assert len(read_animation(out / "line.gif")) == 5 and not (out / "after.gif").exists()

    fixed = load_recipe(path, ["steps.broken.fail=false"], manager=manager)
    assert statuses(run_recipe(fixed, out, manager=manager)) == {
        "line": "cached", "gif": "cached", "broken": "ran", "after": "ran"}


def test_refuses_to_replace_files_it_did_not_write(manager, tmp_path):
    path = write(tmp_path, LINE_RECIPE, "r.yaml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "line.gif").write_bytes(b"the user's own file")
    recipe = load_recipe(path, ["steps.broken.fail=false"], manager=manager)
    with pytest.raises(UsageError, match="was not written by this recipe; pass --force"):
        run_recipe(recipe, out, manager=manager)
    assert (out / "line.gif").read_bytes() == b"the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["line.gif"]  # not even the cache

    run_recipe(recipe, out, force=True, manager=manager)
    assert len(read_animation(out / "line.gif")) == 5
    (out / "line.gif").write_bytes(b"edited after the run")
    with pytest.raises(UsageError, match="was not written by this recipe"):
        run_recipe(recipe, out, fresh=True, manager=manager)


def test_dry_run_writes_nothing(manager, tmp_path):
    path = write(tmp_path, LINE_RECIPE)
    recipe = load_recipe(path, ["steps.broken.fail=false"], manager=manager)
    reports = run_recipe(recipe, tmp_path / "out", dry_run=True, manager=manager)
    assert [r.status for r in reports] == ["planned"] * 4
    assert reports[1].outputs == ["line.gif"]
    assert not (tmp_path / "out").exists()


def test_missing_video_weights_fail_the_step_with_exit_code_2(manager, tmp_path):
    (tmp_path / "empty").mkdir()
    path = write(tmp_path, """
version: 1
steps:
  - {name: line, type: line}
  - name: real
    type: video
    input: line
    prompt: a real line
    base: empty
    motion_adapter: empty
    controlnet: empty
""")
    with pytest.raises(FlipSketchError) as exc:
        run_recipe(load_recipe(path, manager=manager), tmp_path / "out", manager=manager)
    message = str(exc.value)
    assert message.startswith("step 'real' (video) failed: cannot load the motion adapter")
    assert str(tmp_path / "empty") in message
    assert "\n" not in message and exc.value.exit_code == 2


# -- format, overrides and validation ----------------------------------------------------------
def test_overrides_and_sampler_option_precedence(tmp_path):
    path = write(tmp_path, """
version: 1
defaults: {seed: 3, lambda: 0.25, num_frames: 6}
steps:
  - {name: letters, type: word, text: CAT, prompt: a cat}
  - {name: text, type: generate, prompt: a dog, seed: 11, compose: none}
""")
    letters, text = load_recipe(path).steps
    assert (letters.settings.seed, letters.settings.lambda_) == (3, 0.25)
    assert letters.settings.compose == "spatial"  # the word step drops temporal composition
    assert (text.settings.seed, text.settings.compose) == (11, "none")  # step keys win

    letters, text = load_recipe(path, ["seed=4", "steps.letters.compose=both",
                                       "steps[1].prompt=a cat: running", "lambda=1"]).steps
    assert (letters.settings.seed, text.settings.seed) == (4, 11)
    assert letters.settings.compose == "both" and letters.settings.lambda_ == 1.0
    assert text.params["prompt"] == "a cat: running"

    with pytest.raises(UsageError, match="has no step named 'nope'; its steps are: letters, te"):
        load_recipe(path, ["steps.nope.seed=1"])
    with pytest.raises(RecipeError, match=r"recipe.yaml \(--set\): defaults.seed: expected a"):
        load_recipe(path, ["seed=many"])
    with pytest.raises(UsageError, match="is not key=value"):
        load_recipe(path, ["seed"])


def test_exponent_numbers_are_numbers_in_the_file_and_in_set(tmp_path):
    # YAML 1.1 (PyYAML's default) reads 5e-1 as the text "5e-1"; users write numbers that way.
    path = write(tmp_path, """
version: 1
defaults: {lambda: 5e-1}
steps:
  - {name: text, type: generate, prompt: a dog}
""")
    assert load_recipe(path).steps[0].settings.lambda_ == 0.5
    assert load_recipe(path, ["lambda=2.5E-1"]).steps[0].settings.lambda_ == 0.25
    with pytest.raises(RecipeError, match=r"steps\[0\].prompt: expected a string, got 100000.0"):
        load_recipe(path, ["steps.text.prompt=1e5"])  # a number, as prompt=12 would be


def test_a_blank_drawing_is_refused_when_the_recipe_is_read(tmp_path):
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    path = write(tmp_path, """
version: 1
steps:
  - {name: a, type: animate, sketch: blank.png, prompt: the cat walks}
""")
    with pytest.raises(RecipeError, match=r"recipe.yaml:3: steps\[0\].sketch: .*blank"):
        load_recipe(path)


def test_paths_are_relative_to_the_recipe_or_to_where_set_was_typed(tmp_path, monkeypatch):
    shutil.copy(shared_sketch("cat.png"), tmp_path / "drawing.png")
    path = write(tmp_path, """
version: 1
steps:
  - {name: a, type: animate, sketch: drawing.png, prompt: the cat walks}
""")
    monkeypatch.chdir(shared_sketch("fish.png").parent)
    assert load_recipe(path).steps[0].params["sketch"] == (tmp_path / "drawing.png").resolve()
    assert load_recipe(path, ["steps.a.sketch=fish.png"]).steps[0].params["sketch"] == \
        shared_sketch("fish.png").resolve()
    with pytest.raises(RecipeError, match=r"recipe.yaml \(--set\): steps\[0\].sketch: file"):
        load_recipe(path, ["steps.a.sketch=drawing.png"])


def test_sampler_and_plugin_values_are_checked_at_their_line(tmp_path):
    path = write(tmp_path, """
version: 1
defaults:
  num_frames: 1
steps:
  - name: a
    type: generate
    prompt: a dog
""")
    with pytest.raises(RecipeError, match=r"recipe.yaml:3: defaults.num_frames: num_frames must"):
        load_recipe(path)
    path = write(tmp_path, """
version: 1
steps:
  - name: a
    type: generate
    prompt: a dog
    aligner: nope
""")
    with pytest.raises(RecipeError, match=r"recipe.yaml:6: steps\[0\].aligner: unknown aligner"):
        load_recipe(path)


def test_several_samples_are_written_as_numbered_files(tmp_path):
    path = write(tmp_path, """
version: 1
defaults: {samples: 2}
steps:
  - {name: a, type: generate, prompt: a dog}
  - {name: gif, type: write, input: a, path: dog.gif}
  - {name: contact, type: write, input: a, path: sheets/dog.contact.png}
  - {name: one, type: generate, prompt: a cat, samples: 1}
  - {name: again, type: write, input: one, path: dog-2.gif}
""")
    with pytest.raises(RecipeError, match=r"recipe.yaml:8: steps\[4\].path: 'dog-2.gif' is "
                                          r"also written by step 'gif'"):
        load_recipe(path)
    recipe = load_recipe(path, ["steps.again.path=cat.gif"])
    assert recipe.steps[4].outputs == ["cat.gif"]
    assert recipe.steps[1].outputs == ["dog-1.gif", "dog-2.gif"]
    assert recipe.steps[2].outputs == ["sheets/dog-1.contact.png", "sheets/dog-2.contact.png"]


def test_third_party_step_types_plug_in(manager, tmp_path):
    registry = manager.registry("recipe_step")
    assert registry.owners["line"] == "line-plugin" and registry.owners["word"] == "recipes"
    path = write(tmp_path, """
version: 1
steps:
  - {name: line, type: line, frames: 3}
  - {name: frames, type: write, input: line, path: frames}
""")
    with pytest.raises(RecipeError, match="unknown step type 'line'"):
        load_recipe(path)  # the process-wide manager does not have the plugin
    run_recipe(load_recipe(path, manager=manager), tmp_path / "out", manager=manager)
    assert sorted(p.name for p in (tmp_path / "out" / "frames").iterdir()) == [
        "frame_000.png", "frame_001.png", "frame_002.png"]


# Each bad recipe: its text, the line the error must name, and words the message must hold.
BAD_RECIPES = {
    "unknown-type.yaml": ("version: 1\nsteps:\n  - name: a\n    type: animte\n", 4,
                          ["steps[0].type", "unknown step type 'animte'", "did you mean"]),
    "missing-key.yaml": ("version: 1\nsteps:\n  - name: a\n    type: word\n    text: HI\n", 3,
                         ["steps[0].prompt: field required"]),
    "mistyped-key.yaml": ("version: 1\nsteps:\n  - name: a\n    type: generate\n"
                          "    promt: a dog\n", 5, ["steps[0].promt: unknown key",
                                                    "did you mean 'prompt'"]),
    "wrong-type.yaml": ("version: 1\nsteps:\n  - name: a\n    type: generate\n"
                        "    prompt: a dog\n    num_frames: ten\n", 6,
                        ["steps[0].num_frames: expected a whole number"]),
    "unknown-step.yaml": ("version: 1\nsteps:\n  - {name: a, type: generate, prompt: x}\n"
                          "  - {name: w, type: write, input: nothing, path: a.gif}\n", 4,
                          ["steps[1].input", "'nothing' is not the name of an earlier step"]),
    "later-step.yaml": ("version: 1\nsteps:\n  - {name: w, type: write, input: a, path: a.gif}\n"
                        "  - {name: a, type: generate, prompt: x}\n", 3,
                        ["steps[0].input", "or a later one"]),
    "escape.yaml": ("version: 1\nsteps:\n  - {name: a, type: generate, prompt: x}\n"
                    "  - name: w\n    type: write\n    input: a\n    path: ../../escape.gif\n",
                    7, ["steps[1].path", "leaves OUTDIR"]),
    "absolute.yaml": ("version: 1\nsteps:\n  - {name: a, type: generate, prompt: x}\n"
                      "  - {name: w, type: write, input: a, path: /tmp/abs.gif}\n", 4,
                      ["steps[1].path", "absolute path"]),
    "python-tag.yaml": ("version: 1\nsteps:\n  - name: a\n    type: generate\n"
                        "    prompt: !!python/object/apply:os.system ['touch {marker}']\n", 5,
                        ["tag !!python/object/apply:os.system is not allowed"]),
    "not-a-mapping.yaml": ("- version: 1\n- steps: []\n", 1, ["a recipe is a mapping"]),
    "empty.yaml": ("", 1, ["the recipe is empty"]),
    "wrong-version.yaml": ("version: 2\nsteps:\n  - {name: a, type: generate, prompt: x}\n", 1,
                           ["version: unsupported version 2"]),
    "unknown-top-key.yaml": ("version: 1\nsetps: []\n", 2, ["setps: unknown key",
                                                            "did you mean 'steps'"]),
    "missing-sketch.yaml": ("version: 1\nsteps:\n  - name: a\n    type: animate\n"
                            "    prompt: x\n    sketch: nowhere.png\n", 6,
                            ["steps[0].sketch: file not found"]),
    "duplicate-name.yaml": ("version: 1\nsteps:\n  - {name: a, type: generate, prompt: x}\n"
                            "  - {name: a, type: generate, prompt: y}\n", 4,
                            ["step name 'a' is used twice"]),
    "bad-yaml.yaml": ("version: 1\nsteps:\n  - {name: a, type: generate\n", 4,
                      ["invalid YAML"]),
}


@pytest.fixture
def bad_recipes(tmp_path) -> dict[str, tuple[Path, int, list[str]]]:
    folder = tmp_path / "bad"
    folder.mkdir()
    marker = tmp_path / "os-system-ran"
    return {name: (write(folder, text.replace("{marker}", str(marker)), name), line, words)
            for name, (text, line, words) in BAD_RECIPES.items()}


def test_bad_recipes_give_one_line_each_and_exit_2(bad_recipes, tmp_path, cli):
    files = [path for path, _, _ in bad_recipes.values()]
    result = cli("recipe", "validate", *files, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == len(bad_recipes), result.stderr
    for line, (path, number, words) in zip(lines, bad_recipes.values(), strict=True):
        assert line.startswith(f"error: {path}:{number}: "), line
        for word in words:
            assert word in line, line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "os-system-ran").exists()


def test_bad_recipes_run_nothing_and_write_nothing(bad_recipes, tmp_path, cli):
    for name, (path, number, _) in bad_recipes.items():
        out = tmp_path / "out"
        result = cli("recipe", "run", path, "-o", out)
        assert result.returncode == 2, (name, result.stderr)
        err = result.stderr
        assert err.count("\n") == 1 and err.startswith(f"error: {path}:{number}: "), err
        assert not out.exists(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]  # the python tag never ran


def test_validate_and_list_commands(cli):
    validated = cli("recipe", "validate", "word-morph.yaml", "extrapolate")
    assert validated.returncode == 0, validated.stderr
    assert "ok word-morph.yaml: 3 steps" in validated.stderr
    assert "ok extrapolate.yaml" in validated.stderr
    listed = cli("recipe", "list")
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in [*BUNDLED, "extrapolate", "interpolate", "video"])
    missing = cli("recipe", "run", "no-such-recipe")
    assert missing.returncode == 2
    assert "not found: no such file and no bundled recipe" in missing.stderr


# -- word rendering ----------------------------------------------------------------------------
def test_words_are_drawn_as_outlines_centred():
    img = render_text("CAT", size=256)
    ink = np.asarray(img) < 128  # (256, 256)
    rows, cols = np.nonzero(ink)
    assert abs((cols.min() + cols.max()) / 2 - 128) < 8 and abs((rows.min() + rows.max()) / 2
                                                                  - 128) < 8
    assert cols.max() - cols.min() > 0.6 * 256  # fills the square's width

    # Outlines enclose paper: flooding the background from a corner leaves the letters'
    # insides white, and there is more of that than ink (solid letters would enclose little).
    flooded = img.convert("L").copy()
    ImageDraw.floodfill(flooded, (0, 0), 128)
    enclosed = (np.asarray(flooded) == 255).sum()
    assert enclosed > ink.sum()


def test_a_font_file_is_used(tmp_path):
    def glyph(img: Image.Image) -> np.ndarray:
        """The ink, cropped to its bounding box."""
        ink = np.asarray(img) < 128
        ys, xs = np.nonzero(ink)
        return ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]

    default = glyph(render_text("H", 128))
    font_file = tmp_path / "aileron.ttf"  # the very font Pillow embeds, as a file
    font_file.write_bytes(ImageFont.load_default(size=20).path.getvalue())
    np.testing.assert_array_equal(glyph(render_text("H", 128, font_file)), default)
    serif = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf")
    if serif.exists():  # a font that looks different draws differently
        assert glyph(render_text("H", 128, serif)).shape != default.shape

    path = write(tmp_path, """
version: 1
steps:
  - name: a
    type: word
    text: HI
    prompt: waving
    font: not-a-font.ttf
""")
    (tmp_path / "not-a-font.ttf").write_text("plain text")
    with pytest.raises(RecipeError, match=r"recipe.yaml:7: steps\[0\].font: cannot load font"):
        load_recipe(path)


# -- contact sheets ----------------------------------------------------------------------------
def erode(mask: np.ndarray, k: int) -> np.ndarray:
    """Pixels whose whole k x k neighbourhood is in ``mask`` (binary erosion, numpy only)."""
    padded = np.pad(mask, k // 2, constant_values=False)
    return np.lib.stride_tricks.sliding_window_view(padded, (k, k)).all(axis=(-1, -2))


def test_contact_sheet_shows_every_frame_in_order(tmp_path):
    levels = [40 + 20 * i for i in range(10)]
    frames = [Image.new("L", (48, 48), level) for level in levels]
    assert check_output_path(tmp_path / "x.contact.png").name == "contact-sheet"  # not apng
    path = save_frames(frames, tmp_path / "x.contact.png", fps=5)
    with Image.open(path) as sheet:
        assert sheet.format == "PNG" and getattr(sheet, "n_frames", 1) == 1
        pixels = np.asarray(sheet.convert("L"))
    centres = []
    for level in levels:
        # Eroding drops the labels' anti-aliased edges, which may share a frame's grey level.
        block = erode(pixels == level, 5)
        ys, xs = np.nonzero(block)
        assert len(ys) >= 44 * 44  # the whole frame is there
        centres.append((ys.mean(), xs.mean()))
    assert centres == sorted(centres)  # left to right, top to bottom
    assert (pixels < 20).any()  # the labels


def test_cached_frames_are_exact(tmp_path, manager):
    """The cache stores frames losslessly (float32), so a cached step feeds the next one
    exactly what it made."""
    path = write(tmp_path, LINE_RECIPE)
    out = tmp_path / "out"
    run_recipe(load_recipe(path, ["steps.broken.fail=false"], manager=manager), out,
               manager=manager)
    (clip,) = StepCache(out).load("line")
    expected = _moving_line(None, load_recipe(path, manager=manager).steps[0])[0].frames
    np.testing.assert_array_equal(clip.frames, expected)
    assert clip.frames.dtype == np.float32 and clip.fps == 10.0
    manifest = json.loads((out / CACHE_DIR / "manifest.json").read_text())
    assert set(manifest["steps"]["gif"]["files"]) == {"line.gif"}
