"""Every fenced code block of README.md and docs/*.md runs, so the documentation cannot drift.

- ```python blocks run with ``exec`` in a fresh working folder that holds the example drawings
  (``fish.png``, ``cat.png``, ... shipped in ``src/flipsketch/examples``), as a user runs them
  beside their drawings;
- ```bash blocks run command by command in such a folder; each command must be
  ``flipsketch ...`` and runs in this process through ``flipsketch.cli.main`` (the console
  entry point), and must exit 0;
- a block right after a ``<!-- not-tested: REASON -->`` comment is skipped with that reason,
  so what is not run is visible in the markdown and in pytest's skip report (``-rs``);
- ```text blocks are not code (diagrams, sample output) and are not run;
- any other block (no language, another language, a shell command that is not
  ``flipsketch``) fails: run it, mark it, or label it text.

The sampler is shortened here to at most ``QUICK_STEPS`` steps and ``QUICK_FRAMES`` frames
(enough for inversion, alignment, composition and a kept frame 1 to run): a block runs every
stage as written, only with fewer steps; the step and frame counts themselves are what the
sampler's own tests check. docs/gallery is generated (``scripts/make_gallery.py``) and not
read here.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from testing import SKETCHES, Block, code_blocks, commands, run_python

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
QUICK_STEPS = 3  # tau1 = 1, tau2 = 1: step 0 aligns, steps 0-1 compose, step 2 keeps frame 1
QUICK_FRAMES = 3


BLOCKS = [block for path in DOCS for block in code_blocks(path)]
CODE = [block for block in BLOCKS if block.lang != "text"]


@pytest.fixture
def quick_sampler(monkeypatch):
    """Every FlipSketchPipeline call in the test runs at most QUICK_STEPS steps and
    QUICK_FRAMES frames, whoever calls it (the CLI, the API, a recipe)."""
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    full = FlipSketchPipeline.__call__

    def quick(self, prompt, sketch=None, **options):
        options["num_inference_steps"] = min(options.get("num_inference_steps", QUICK_STEPS),
                                             QUICK_STEPS)
        options["num_frames"] = min(options.get("num_frames", QUICK_FRAMES), QUICK_FRAMES)
        return full(self, prompt, sketch, **options)

    monkeypatch.setattr(FlipSketchPipeline, "__call__", quick)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh working folder holding the example drawings, as the examples expect."""
    for sketch in SKETCHES.glob("*.png"):
        shutil.copy(sketch, tmp_path / sketch.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("block", CODE, ids=[b.id for b in CODE])
def test_code_block_runs(block: Block, workdir, quick_sampler, cli):
    if block.not_tested is not None:
        pytest.skip(f"not tested: {block.not_tested}")
    if block.lang == "python":
        run_python(block)
    elif block.lang == "bash":
        for words in commands(block.code):
            assert words[0] == "flipsketch", (
                f"{block.id}: '{shlex.join(words)}' is not a flipsketch command; make it one "
                f"or put <!-- not-tested: REASON --> above the block")
            result = cli(*words[1:])
            assert result.returncode == 0, f"{block.id}: {shlex.join(words)}\n{result.stderr}"
            for option, value in zip(words, words[1:], strict=False):
                if option in ("-o", "--output"):
                    assert (workdir / value).exists(), f"{block.id}: {value} was not written"
    else:
        pytest.fail(f"{block.id}: a ```{block.lang} block cannot be run; write it as python "
                    f"or bash, put <!-- not-tested: REASON --> above it, or label it ```text "
                    f"if it is not code")


def test_every_markdown_file_is_read_and_blocks_are_found():
    # The README holds the install/test, animate, Python API and plugin examples at least.
    readme = [b for b in BLOCKS if b.file == "README.md"]
    assert {b.lang for b in readme} == {"bash", "python"}
    assert len(readme) >= 5
    assert all(b.file != "docs/gallery/README.md" for b in BLOCKS)
    skipped = [b for b in readme if b.not_tested]
    assert all(b.not_tested.strip() for b in skipped)  # a reason, not just the marker
    assert len(skipped) < len(readme)


def test_the_not_tested_marker_applies_to_the_next_block_only(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- not-tested: needs a GPU\n  and the hub -->\n```bash\n"
                    "flipsketch animate x.png y --device cuda\n```\n\n<!-- a remark -->\n"
                    "```python\nprint(1)\n```\n\nplain\n\n```bash\nflipsketch plugins \\\n"
                    "    --json  # all of them\n```\n", encoding="utf-8")
    first, second, third = code_blocks(page, root=tmp_path)
    assert (first.line, first.lang, first.not_tested) == (5, "bash", "needs a GPU and the hub")
    assert (second.lang, second.not_tested, second.code) == ("python", None, "print(1)\n")
    assert third.not_tested is None
    assert commands(third.code) == [["flipsketch", "plugins", "--json"]]


def readme_block(containing: str) -> Block:
    [block] = [b for b in BLOCKS if b.file == "README.md" and containing in b.code]
    return block


def test_readme_plugin_example_is_a_working_post_processor():
    """The README's plugin, registered like an installed one: it draws at the requested size,
    thicker than the plain resize, and as black ink on transparency when asked."""
    from flipsketch.api import postprocess
    from flipsketch.plugins import PluginManager

    manager = PluginManager(load_entry_points=False)
    manager.register(run_python(readme_block("@hookimpl"), "readme_plugin"), name="readme")
    frames = np.ones((2, 64, 64), np.float32)
    frames[:, 20:44, 31] = 0.0  # a one-pixel vertical stroke
    thick = postprocess(frames, "thick", size=100, manager=manager)
    plain = postprocess(frames, "raw", size=100, manager=manager)
    assert [image.size for image in thick] == [(100, 100)] * 2
    ink = [int((np.asarray(image.convert("L")) < 128).sum()) for image in (thick[0], plain[0])]
    assert ink[0] > 1.5 * ink[1] > 0, ink

    clear = postprocess(frames, "thick", size=100, transparent=True, manager=manager)
    alpha = np.asarray(clear[0])[..., 3]
    assert clear[0].mode == "RGBA" and alpha[0, 0] == 0 and alpha.max() > 200


def test_a_failing_block_fails_its_test(workdir, cli):
    # The runner is not a formality: a command that fails, one that is not flipsketch, or a
    # block in a language it cannot run makes the block's test fail.
    failing = Block("x.md", 1, "bash", "flipsketch animate missing.png 'a fish'\n", None)
    with pytest.raises(AssertionError, match="missing.png"):
        test_code_block_runs(failing, workdir, None, cli)
    shell = Block("x.md", 1, "bash", "ls -l\n", None)
    with pytest.raises(AssertionError, match="not a flipsketch command"):
        test_code_block_runs(shell, workdir, None, cli)
    with pytest.raises(pytest.fail.Exception, match="cannot be run"):
        test_code_block_runs(Block("x.md", 1, "yaml", "a: 1\n", None), workdir, None, cli)
