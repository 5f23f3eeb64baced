"""Fuzzing the parsers that read what users hand us: drawings, recipes, ``--set`` edits.

The property is always the same: a valid result or a ``FlipSketchError`` whose message is one
line, never another exception (a traceback for the user) and never a hang. Hypothesis runs are
bounded and seeded (``derandomize``: the same examples on every run, a failure reproduces)
and keep no example database; Hypothesis' other files (its caches) go into pytest's
temporary folder (conftest's ``hypothesis_home``), so the suite leaves nothing in the
repository or in the system's temporary folder. ``EXAMPLES`` sets
how many examples each property gets; the README's Reliability section quotes these numbers.
"""

from __future__ import annotations

import copy
import io
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from flipsketch.errors import FlipSketchError
from flipsketch.frames.images import load_sketch, to_grey_square
from flipsketch.models.tiny import CONFIG_PATH, load_config, override_config
from flipsketch.overrides import parse_override
from flipsketch.recipes import load_recipe
from flipsketch.recipes.parsing import bundled_recipes
from flipsketch.recipes.schema import TOP_LEVEL_KEYS
from flipsketch.recipes.steps import BUILTIN_STEPS

from testing import shared_sketch

# Examples per property: a few seconds each on a busy 2-core machine.
EXAMPLES = {"bytes": 1000, "mutated": 1000, "recipe_tree": 300, "recipe_text": 1000,
            "override": 1000, "recipe_set": 500, "config_set": 300, "cli_animate": 8,
            "cli_recipe": 50}
# Any one example that takes longer than this is a hang (seconds; generous for a busy box).
EXAMPLE_TIMEOUT_S = 20.0


def fuzz(name: str, **extra: Any):
    """``@settings`` for one property: ``EXAMPLES[name]`` seeded examples, no database, no
    per-example deadline (``within_time_limit`` is the hang guard; load varies too much)."""
    return settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True,
                    database=None, **extra)


class Hang(Exception):
    """An example ran past ``EXAMPLE_TIMEOUT_S``."""


@contextmanager
def within_time_limit(seconds: float = EXAMPLE_TIMEOUT_S) -> Iterator[None]:
    """Fail an example that runs past ``seconds`` (POSIX: a real-time timer's SIGALRM)."""
    if sys.platform == "win32":
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_one_line(error: FlipSketchError) -> None:
    message = str(error)
    assert message.strip() and "\n" not in message and "\r" not in message, repr(message)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A folder for the examples' files (module scope: hypothesis calls the test many times
    with one set of fixtures)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        yield Path(folder)


# -- sketches ----------------------------------------------------------------------------------
def check_sketch(path: Path, data: bytes) -> None:
    """``load_sketch`` gives an image the sampler can use, or one line of error."""
    path.write_bytes(data)
    with within_time_limit():
        try:
            image = load_sketch(path)
        except FlipSketchError as error:
            assert_one_line(error)
            event("refused in one line")
            return
        event("loaded")
        # What animate does next with it: a grey square of the model's size.
        assert to_grey_square(image, 16).size == (16, 16)


@fuzz("bytes")
@given(data=st.binary(max_size=4096))
def test_sketch_loader_on_random_bytes(data, scratch):
    check_sketch(scratch / "random.png", data)


@pytest.fixture(scope="module")
def real_files() -> dict[str, bytes]:
    """A real drawing as PNG, and the same drawing as the JPEG a phone would make of it."""
    png = shared_sketch("fish.png").read_bytes()
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(jpeg, "JPEG", quality=85)
    return {"png": png, "jpeg": jpeg.getvalue()}


# One edit of a file: flip a byte, cut the file short, insert bytes, delete a run of bytes.
# Positions are fractions of the length, so they land anywhere whatever the file's size.
EDITS = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 256)),
)


def mutate(data: bytes, edits: list[tuple]) -> bytes:
    buffer = bytearray(data)
    for kind, where, *arg in edits:
        at = min(int(where * len(buffer)), max(len(buffer) - 1, 0))
        if kind == "flip" and buffer:
            buffer[at] ^= arg[0]
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "insert":
            buffer[at:at] = arg[0]
        elif kind == "delete":
            del buffer[at:at + arg[0]]
    return bytes(buffer)


@fuzz("mutated")
@given(kind=st.sampled_from(["png", "jpeg"]), edits=st.lists(EDITS, min_size=1, max_size=6))
def test_sketch_loader_on_mutated_real_files(kind, edits, real_files, scratch):
    check_sketch(scratch / f"mutated.{kind}", mutate(real_files[kind], edits))


# -- recipes -----------------------------------------------------------------------------------
# Keys a recipe may hold, so that generated trees get past the first unknown key and into
# the checks of each field; random text as keys as well.
STEP_KEYS = sorted({"name", "type", *(key for step in BUILTIN_STEPS.values()
                                      for key in step.fields)})
OPTION_KEYS = ["num_frames", "num_inference_steps", "guidance_scale", "lambda", "motion",
               "seed", "samples", "tau1", "tau2", "compose", "align", "aligner", "composer",
               "inverter", "paper", "keep_first_frame", "align_iterations", "align_lr"]
KEYS = st.one_of(st.sampled_from([*TOP_LEVEL_KEYS, *STEP_KEYS, *OPTION_KEYS]),
                 st.text(max_size=8))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from([*BUILTIN_STEPS, "tiny", "cpu", "fp16", "none", "both", "fish.gif",
                     "../escape.gif", "/abs/out.png", "", "letters", "a fish", "1"]),
)
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(KEYS, children, max_size=6)),
    max_leaves=30,
)
STEP = st.dictionaries(st.sampled_from(STEP_KEYS), TREES, max_size=6).map(
    lambda step: {"name": "s", "type": "animate", **step})
BUNDLED = [yaml.safe_load(path.read_text(encoding="utf-8"))
           for path in bundled_recipes().values()]


def containers(tree: Any) -> Iterator[dict | list]:
    """Every mapping and list in ``tree``, ``tree`` included."""
    if isinstance(tree, dict | list):
        yield tree
        for child in tree.values() if isinstance(tree, dict) else tree:
            yield from containers(child)


@st.composite
def edited_recipes(draw) -> Any:
    """A bundled recipe with one to three edits (a value replaced by a random tree, a key or
    an item deleted, one added): most of it stays valid, so the checks deep in the
    validator (steps, their references, sampler options, outputs) get exercised too."""
    data = copy.deepcopy(draw(st.sampled_from(BUNDLED)))
    for _ in range(draw(st.integers(1, 3))):
        node = draw(st.sampled_from(list(containers(data))))
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        action = draw(st.sampled_from(["replace", "delete", "add"] if keys else ["add"]))
        if action == "add" and isinstance(node, dict):
            node[draw(KEYS)] = draw(TREES)
        elif action == "add":
            node.append(draw(TREES))
        else:
            key = draw(st.sampled_from(keys))
            if action == "delete":
                del node[key]
            else:
                node[key] = draw(TREES)
    return data


RECIPES = st.one_of(
    TREES,
    edited_recipes(),
    st.fixed_dictionaries(
        {"version": st.one_of(st.just(1), SCALARS), "steps": st.lists(STEP, max_size=4)},
        optional={"model": TREES, "defaults": st.dictionaries(
            st.sampled_from(OPTION_KEYS), TREES, max_size=4), "device": TREES,
            "dtype": TREES, "description": TREES}),
)


def check_recipe(path: Path, overrides: tuple[str, ...] = ()) -> None:
    """``load_recipe`` gives a Recipe or one line of error."""
    with within_time_limit():
        try:
            load_recipe(path, overrides)
        except FlipSketchError as error:
            assert_one_line(error)
            event("refused in one line")
        else:
            event("valid recipe")


@fuzz("recipe_tree")
@given(tree=RECIPES)
def test_recipe_parser_on_generated_yaml_trees(tree, scratch):
    path = scratch / "tree.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    check_recipe(path)


@fuzz("recipe_text")
@given(text=st.one_of(
    st.text(max_size=200),
    # Text made of YAML's own syntax: indentation, flow collections, anchors, tags.
    st.lists(st.sampled_from(["version: 1\n", "steps:\n", "  - ", "name: a\n", "type: write\n",
                              "{", "}", "[", "]", ",", ":", " ", "\n", "  ", "&a ", "*a",
                              "!!python/object:os.system ", "!!binary ", "'", '"', "#", "- ",
                              "? ", "|\n", ">\n", "\t", "%YAML 1.1\n", "---\n", "...\n",
                              "\\", "\x00", "\ufeff", "input: a\n", "path: x.gif\n"]),
             max_size=40).map("".join),
))
def test_recipe_parser_on_random_text(text, scratch):
    path = scratch / "text.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_recipe(path)


# -- --set -------------------------------------------------------------------------------------
OVERRIDE_KEYS = st.one_of(
    st.sampled_from(["seed", "defaults.seed", "model", "version", "steps", "steps[0]",
                     "steps[0].prompt", "steps[99].text", "steps.letters.text",
                     "steps.gif.size", "steps.nope.x", "defaults", "defaults.lambda",
                     "steps[0].font", "description", "a..b", "[0]", "steps.letters",
                     "stages.base.batch_size", "stages.base", "model.unet.block_out_channels",
                     "seed[3]", "", " ", "."]),
    st.text(max_size=12),
)
OVERRIDE_VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["3", "-1", "1e400", "nan", ".inf", "true", "null", "~", "[1, 2]", "[",
                     "{a: 1}", "a: b", "!!python/name:os.system", "&x [*x]", "'", "SWAN",
                     "0x10", "1_000", "3e-5", ""]),
)
OVERRIDES = st.one_of(st.text(max_size=40),
                      st.builds(lambda k, v: f"{k}={v}", OVERRIDE_KEYS, OVERRIDE_VALUES))


@fuzz("override")
@given(text=OVERRIDES)
def test_override_parser(text):
    with within_time_limit():
        try:
            key, parts, value = parse_override(text, example="seed=3")
        except FlipSketchError as error:
            assert_one_line(error)
            return
    assert parts and isinstance(key, str)


@fuzz("recipe_set")
@given(texts=st.lists(OVERRIDES, min_size=1, max_size=3))
def test_set_on_a_bundled_recipe(texts):
    check_recipe(Path("word-morph.yaml"), tuple(texts))


@fuzz("config_set")
@given(texts=st.lists(OVERRIDES, min_size=1, max_size=3))
def test_set_on_the_training_config(texts):
    config = load_config(CONFIG_PATH)
    with within_time_limit():
        try:
            for text in texts:
                override_config(config, text)
        except FlipSketchError as error:
            assert_one_line(error)


# -- through the real command line -------------------------------------------------------------
def assert_clean(result) -> None:
    """What the user sees: success or bad input (exit 2) in one line, never a traceback."""
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode == 2:
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, \
            result.stderr


@fuzz("cli_animate", suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["png", "jpeg"]), edits=st.lists(EDITS, max_size=3))
def test_animate_command_on_mutated_drawings(kind, edits, cli, tiny_model_dir, real_files,
                                              scratch):
    sketch = scratch / f"drawing.{kind}"
    sketch.write_bytes(mutate(real_files[kind], edits))
    with within_time_limit(120):
        result = cli("animate", sketch, "a cat", "-o", scratch / "out.gif", "--force",
                     "--model", tiny_model_dir, "--steps", "1", "--frames", "2", "--size", "16")
    assert_clean(result)
    event(f"exit {result.returncode}")


@fuzz("cli_recipe", suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=RECIPES, texts=st.lists(OVERRIDES, max_size=2))
def test_recipe_command_on_generated_recipes(tree, texts, cli, scratch):
    path = scratch / "cli.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    sets = [arg for text in texts for arg in ("--set", text)]
    with within_time_limit():
        result = cli("recipe", "run", path, "-o", scratch / "cli-out", "--dry-run", *sets)
    assert_clean(result)
    event(f"exit {result.returncode}")
