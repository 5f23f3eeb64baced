"""The plugin API stays documented and tested: every hook has its place in docs/plugins.md
(with the exact signature of what it registers) and a working example there that this module
registers and runs, and every built-in implementation is reachable by name.

Adding a hookspec without a reference entry, an example and an ``EXERCISE`` entry here fails
``test_every_hook_is_documented_and_exercised``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import typer
import typer.main
from PIL import Image, ImageDraw

from flipsketch.plugins import (
    BUILTIN_PLUGINS,
    COMMANDS_HOOK,
    STAGES,
    PluginManager,
    get_manager,
    hookspecs,
)

from testing import code_blocks, run_python

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
HOOKSPECS = Path(hookspecs.__file__)


def declared_hooks() -> list[str]:
    """The functions decorated with ``@hookspec`` in hookspecs.py, read from its source (so a
    hook cannot hide from this test by being declared another way)."""
    tree = ast.parse(HOOKSPECS.read_text(encoding="utf-8"))
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)
            and any(ast.unparse(d) == "hookspec" for d in node.decorator_list)]


def examples() -> dict[str, list[str]]:
    """Hook -> the ids of the guide's python blocks that implement it."""
    found: dict[str, list[str]] = {}
    for block in code_blocks(GUIDE):
        if block.lang != "python" or block.not_tested or "@hookimpl" not in block.code:
            continue
        tree = ast.parse(block.code)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("register_"):
                found.setdefault(node.name, []).append(block.id)
    return found


def signature_line(stage_type: type) -> str:
    """``Name(param: type, *, kw: type) -> result`` as the guide writes it; a dataclass as
    ``Name(field, ...)``."""
    if dataclasses.is_dataclass(stage_type):
        fields = ", ".join(f.name for f in dataclasses.fields(stage_type))
        return f"{stage_type.__name__}({fields})"
    signature = inspect.signature(stage_type.__call__)
    parts, keyword_only = [], False
    for parameter in list(signature.parameters.values())[1:]:
        if parameter.kind is parameter.KEYWORD_ONLY and not keyword_only:
            parts.append("*")
            keyword_only = True
        parts.append(f"{parameter.name}: {parameter.annotation}")
    return f"{stage_type.__name__}({', '.join(parts)}) -> {signature.return_annotation}"


# -- running each example through flipsketch, per hook -----------------------------------------
def registered(module: ModuleType, hook: str) -> dict[str, Any]:
    """What the example registers through ``hook``, by name (commands: by command name)."""
    names: dict[str, Any] = {}
    if hook == COMMANDS_HOOK:
        cli = typer.Typer()
        module.register_commands(cli=cli)
        names = dict(typer.main.get_group(cli).commands)
    else:
        getattr(module, hook)(register=names.__setitem__)
    assert names, f"the example of {hook} registers nothing"
    return names


def sketch() -> Image.Image:
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).line([(16, 48), (32, 16), (48, 48)], fill=0, width=3)
    return image


def sample(request, manager: PluginManager, **stages: str):
    from flipsketch.api import SamplerSettings, animate

    pipe = request.getfixturevalue("tiny_pipe")
    settings = SamplerSettings(num_frames=3, num_inference_steps=3, tau1=1, tau2=1)
    [clip] = animate(pipe, "a line waving", sketch(), settings, cache=False, manager=manager,
                     **stages)
    assert clip.frames.shape == (3, pipe.model_resolution, pipe.model_resolution)
    assert np.isfinite(clip.frames).all()


def exercise_postprocessors(name, manager, request, tmp_path):
    from flipsketch.api import postprocess

    frames = np.ones((2, 32, 32), np.float32)
    frames[:, 8:24, 16] = 0.0
    for transparent in (False, True):
        images = postprocess(frames, name, size=40, transparent=transparent, manager=manager)
        assert [image.size for image in images] == [(40, 40)] * 2
        assert (images[0].mode == "RGBA") == transparent


def exercise_writers(name, manager, request, tmp_path):
    from flipsketch.api import save

    writer = manager.get("writer", name)
    frames = [Image.new("L", (16, 16), shade) for shade in (0, 255)]
    path = save(frames, tmp_path / f"clip{writer.suffixes[0]}", manager=manager)
    assert path.is_file() and path.stat().st_size > 0


def exercise_composers(name, manager, request, tmp_path):
    sample(request, manager, composer=name)


def exercise_inverters(name, manager, request, tmp_path):
    sample(request, manager, inverter=name)


def exercise_aligners(name, manager, request, tmp_path):
    sample(request, manager, aligner=name)


def exercise_backbones(name, manager, request, tmp_path):
    from flipsketch.api import load_pipeline
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    pipe = load_pipeline("tiny", backbone=name, manager=manager)  # the embedded model
    assert isinstance(pipe, FlipSketchPipeline)


def exercise_recipe_steps(name, manager, request, tmp_path):
    from flipsketch.recipes.parsing import load_recipe
    from flipsketch.recipes.runner import run_recipe

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"version: 1\nsteps:\n  - {{name: made, type: {name}}}\n"
                      f"  - {{name: out, type: write, input: made, path: made.gif, "
                      f"size: 32}}\n", encoding="utf-8")
    run_recipe(load_recipe(recipe, manager=manager), tmp_path / "out", manager=manager)
    with Image.open(tmp_path / "out" / "made.gif") as gif:
        assert gif.n_frames > 1


def exercise_interpolators(name, manager, request, tmp_path):
    interpolate = manager.get("interpolator", name)
    frames = [Image.new("L", (8, 8), shade) for shade in (0, 255, 0)]
    out = interpolate(frames, 3)
    assert len(out) == 7
    for i, frame in enumerate(frames):  # the originals keep their places
        assert np.array_equal(np.asarray(out[3 * i]), np.asarray(frame))


def exercise_commands(name, manager, request, tmp_path):
    """Through flipsketch's own command line, with the example registered like a plugin."""
    import flipsketch.cli

    gif = tmp_path / "clip.gif"
    frames = [Image.new("L", (20, 10), shade) for shade in (0, 255, 0)]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    capsys = request.getfixturevalue("capsys")
    for args, code, expected in ((["--help"], 0, name), ([name, str(gif)], 0, "3 frames"),
                                 ([name, str(tmp_path / "no.gif")], 2, "does not exist")):
        with pytest.raises(SystemExit) as exit:
            flipsketch.cli.main(args)
        out, err = capsys.readouterr()
        assert exit.value.code == code and expected in out + err, (args, out, err)


# Hook -> how its example is run: ``exercise(name, manager, request, tmp_path)`` for each
# name the example registers.
EXERCISE: dict[str, Callable[..., None]] = {
    "register_postprocessors": exercise_postprocessors,
    "register_writers": exercise_writers,
    "register_composers": exercise_composers,
    "register_inverters": exercise_inverters,
    "register_aligners": exercise_aligners,
    "register_backbones": exercise_backbones,
    "register_recipe_steps": exercise_recipe_steps,
    "register_interpolators": exercise_interpolators,
    COMMANDS_HOOK: exercise_commands,
}


# -- the checks --------------------------------------------------------------------------------
def test_every_hook_is_documented_and_exercised():
    hooks = declared_hooks()
    assert set(hooks) == {n for n in dir(hookspecs) if n.startswith("register_")}
    guide = GUIDE.read_text(encoding="utf-8")
    found = examples()
    for hook in hooks:
        assert f"### {hook}" in guide, f"docs/plugins.md has no reference entry for {hook}"
        assert hook in found, f"docs/plugins.md has no example implementing {hook}"
        assert hook in EXERCISE, f"add how to run {hook}'s example to EXERCISE"
    assert set(EXERCISE) == set(hooks)


def test_the_guide_states_each_exact_signature():
    guide = GUIDE.read_text(encoding="utf-8")
    for stage in STAGES.values():
        line = signature_line(stage.protocol)
        assert line in guide, f"docs/plugins.md should state, under {stage.hook}:\n{line}"
    commands = inspect.signature(getattr(hookspecs, COMMANDS_HOOK))
    assert f"{COMMANDS_HOOK}(cli: {commands.parameters['cli'].annotation}) -> None" in guide


EXAMPLES = [(hook, block_id) for hook, ids in sorted(examples().items()) for block_id in ids]


@pytest.mark.parametrize(("hook", "block_id"), EXAMPLES, ids=[i for _, i in EXAMPLES])
def test_each_example_of_the_guide_works_as_a_plugin(hook, block_id, request, tmp_path,
                                                     fresh_plugins):
    [block] = [b for b in code_blocks(GUIDE) if b.id == block_id]
    module = run_python(block, "guide_example")
    manager = PluginManager(load_entry_points=False)
    manager.register(module, name="guide-example")
    if hook == COMMANDS_HOOK:  # the command line uses the process-wide manager
        manager = get_manager()
        manager.register(module, name="guide-example")
    assert manager.broken == []
    for name in registered(module, hook):
        EXERCISE[hook](name, manager, request, tmp_path)
    assert manager.broken == []


def test_every_builtin_implementation_is_reachable_by_name():
    manager = PluginManager(load_entry_points=False)
    for plugin, module_name in BUILTIN_PLUGINS.items():
        module = importlib.import_module(module_name)
        hooks = [stage for stage in STAGES.values() if hasattr(module, stage.hook)]
        assert hooks, f"built-in plugin {plugin} implements no stage hook"
        for stage in hooks:
            for name, impl in registered(module, stage.hook).items():
                assert manager.get(stage.name, name) == impl, (stage.name, name)
                assert manager.registry(stage.name).owners[name] == plugin
    described = manager.describe()["stages"]
    for stage in STAGES.values():
        assert described[stage.name]["implementations"], stage.name
        if stage.default is not None:
            assert stage.default in described[stage.name]["implementations"]
