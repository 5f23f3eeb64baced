"""``flipsketch plugins new``: an installable plugin package to start from, one per kind.

Each skeleton is a complete package that works as written: ``pyproject.toml`` listing the
module under the ``flipsketch`` entry-point group, the module with a real implementation of
its hook, one passing test that goes through flipsketch's own API, and a README. A stranger
edits working code instead of assembling it from the guide (docs/plugins.md).

The templates are Python strings filled with ``string.Template`` (``$name``), because the
code they hold is full of the braces ``str.format`` would need escaped. They live with the
command that writes them, not in ``flipsketch.plugins``: that package is what a plugin imports,
and the templates are no part of the plugin API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from flipsketch.errors import UsageError
from flipsketch.files import atomic_path, check_writable_folder
from flipsketch.plugins import ENTRY_POINT_GROUP

PREFIX = "flipsketch-"  # the package-name convention: flipsketch-NAME on PyPI
NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$distribution"
version = "0.1.0"
description = "flipsketch $kind plugin: $summary"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["flipsketch>=0.1"]

[project.optional-dependencies]
test = ["pytest>=8"]

# flipsketch finds plugins through this entry-point group; the module implements its hooks.
[project.entry-points.$group]
$name = "$module"

[tool.setuptools]
packages = ["$module"]
'''

README = '''\
# $distribution

A flipsketch $kind plugin: $summary

## Install

```bash
flipsketch plugins install .        # or: pip install -e .
flipsketch plugins                  # lists "$name"
```

## Use

```bash
$usage
```

## Develop

```bash
pip install -e ".[test]"
pytest
```

`pyproject.toml` lists `$module` under the `$group` entry-point group, and
`$module/__init__.py` implements the `$hook` hook. The guide to every hook is flipsketch's
docs/plugins.md. Publish under the name `$distribution` so that others find it.
'''

# Every test registers the module with a manager of its own: it works whether or not the
# package is installed, and sees no other third-party plugin.
TEST_HEADER = '''\
"""The plugin, registered with a plugin manager of the test's own, through flipsketch's API."""

import $module
from flipsketch.plugins import PluginManager


def manager() -> PluginManager:
    plugins = PluginManager(load_entry_points=False)
    plugins.register($module, name="$name")
    return plugins
'''


@dataclass(frozen=True)
class Kind:
    """What ``plugins new --kind KIND`` writes: the hook, its module and its test."""

    hook: str
    summary: str
    usage: str  # a command that uses the plugin, for the README
    module: str
    test: str


SKETCH_TEST = '''
def sketch():
    """A white square with one stroke, as a user's drawing would be."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).line([(16, 48), (32, 16), (48, 48)], fill=0, width=3)
    return image
'''

KINDS: dict[str, Kind] = {
    "writer": Kind(
        hook="register_writers",
        summary="saves an animation as one PNG strip, frames side by side.",
        usage='flipsketch animate cat.png "a cat jumping" -o cat.$name.png',
        module='''\
"""A flipsketch writer: an animation as one PNG strip, frames left to right.

Output names ending in ``$suffix`` pick it: flipsketch gives a name to the writer that
claims its longest suffix, so ``$suffix`` wins over the built-in ``.png``.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from flipsketch.plugins import Register, Writer, hookimpl

SUFFIX = "$suffix"


def write_strip(frames: list[Image.Image], path: Path, fps: float) -> None:
    """Write ``frames`` side by side to ``path`` (flipsketch moves it into place)."""
    width, height = frames[0].size
    transparent = any(frame.mode in ("RGBA", "LA") for frame in frames)
    mode = "RGBA" if transparent else "RGB"
    strip = Image.new(mode, (width * len(frames), height),
                      (255, 255, 255, 0) if transparent else "white")
    for i, frame in enumerate(frames):
        strip.paste(frame.convert(mode), (i * width, 0))
    strip.save(path, format="PNG")


@hookimpl
def register_writers(register: Register) -> None:
    register("$name", Writer("$name", (SUFFIX,), write_strip))
''',
        test='''

def test_saves_the_frames_side_by_side(tmp_path):
    from PIL import Image

    from flipsketch.api import save

    frames = [Image.new("L", (32, 32), shade) for shade in (0, 128, 255)]
    path = save(frames, tmp_path / "clip$suffix", manager=manager())
    strip = Image.open(path).convert("L")
    assert strip.size == (96, 32)
    assert [strip.getpixel((x, 0)) for x in (0, 32, 64)] == [0, 128, 255]
''',
    ),
    "postprocessor": Kind(
        hook="register_postprocessors",
        summary="draws the animation in blue ink.",
        usage='flipsketch animate cat.png "a cat jumping" --postprocessor $name -o cat.gif',
        module='''\
"""A flipsketch post-processor: the frames drawn in blue ink, on white or transparent paper."""

from __future__ import annotations

from PIL import Image, ImageOps

from flipsketch.plugins import PostprocessSettings, Register, hookimpl

INK = (35, 65, 160)


def blue_ink(frames: list[Image.Image], settings: PostprocessSettings) -> list[Image.Image]:
    """Grey frames -> ``settings.size`` square images whose ink is ``INK``."""
    out = []
    for frame in frames:
        grey = frame.convert("L").resize((settings.size, settings.size),
                                         Image.Resampling.LANCZOS)
        amount = ImageOps.invert(grey)  # how much ink each pixel holds: dark = much
        if settings.transparent:
            image = Image.new("RGBA", grey.size, INK + (0,))
            image.putalpha(amount)
        else:
            image = Image.composite(Image.new("RGB", grey.size, INK),
                                    Image.new("RGB", grey.size, "white"), amount)
        out.append(image)
    return out


@hookimpl
def register_postprocessors(register: Register) -> None:
    register("$name", blue_ink)
''',
        test='''

def test_draws_in_blue_ink_at_the_requested_size():
    import numpy as np

    from flipsketch.api import postprocess

    frames = np.ones((2, 32, 32), np.float32)
    frames[:, :, :16] = 0.0  # left half ink, right half paper
    images = postprocess(frames, "$name", size=48, manager=manager())
    assert [image.size for image in images] == [(48, 48)] * 2
    assert images[0].getpixel((2, 24)) == $module.INK
    assert images[0].getpixel((45, 24)) == (255, 255, 255)

    clear = postprocess(frames, "$name", size=48, transparent=True, manager=manager())
    assert clear[0].mode == "RGBA" and clear[0].getpixel((45, 24))[3] == 0
''',
    ),
    "composer": Kind(
        hook="register_composers",
        summary="the paper's attention composition, keeping closer to the drawing.",
        usage='flipsketch animate cat.png "a cat jumping" --composer $name -o cat.gif',
        module='''\
"""A flipsketch composer: the built-in attention composition, leaning towards the drawing.

It delegates to the built-in ``flipsketch`` composer (paper Sec. 4.3) with lambda raised by
``FIDELITY_BOOST``: a place to start from when changing how the frames follow the sketch.
"""

from __future__ import annotations

import dataclasses

from flipsketch.plugins import (
    Composition,
    CompositionSettings,
    Register,
    get_manager,
    hookimpl,
)

FIDELITY_BOOST = 0.25


def compose(unet, settings: CompositionSettings) -> Composition:
    """Install the built-in composition on ``unet`` with more fidelity to the drawing."""
    builtin = get_manager().get("composer", "flipsketch")
    lambda_ = min(1.0, settings.lambda_ + FIDELITY_BOOST)
    return builtin(unet, dataclasses.replace(settings, lambda_=lambda_))


@hookimpl
def register_composers(register: Register) -> None:
    register("$name", compose)
''',
        test=SKETCH_TEST + '''

def test_animates_a_drawing_with_the_composer():
    from flipsketch.api import SamplerSettings, animate, load_pipeline

    plugins = manager()
    pipe = load_pipeline("tiny", device="cpu", manager=plugins)  # the embedded model
    settings = SamplerSettings(num_frames=3, num_inference_steps=3, tau1=1, tau2=1)
    [clip] = animate(pipe, "a line waving", sketch(), settings, composer="$name",
                     cache=False, manager=plugins)
    assert clip.frames.shape == (3, pipe.model_resolution, pipe.model_resolution)
''',
    ),
    "backbone": Kind(
        hook="register_backbones",
        summary="loads models by names of its own through the built-in loader.",
        usage='flipsketch animate cat.png "a cat jumping" --backbone $name --model $name '
              '-o cat.gif',
        module='''\
"""A flipsketch backbone: names of its own for models, loaded by the built-in loader.

``--backbone $name`` hands ``--model`` to this loader as typed; it turns its own names into
what the built-in ``modelscope`` backbone reads (presets, diffusers folders, hub ids) and lets
that load the model. Replace ``ALIASES`` or ``load`` to load models another way: the result
must be a ``FlipSketchPipeline``.
"""

from __future__ import annotations

from flipsketch.plugins import Register, get_manager, hookimpl

ALIASES = {"$name": "tiny"}  # a name of this plugin -> a model the built-in loader reads


def load(model: str, *, unet: str | None, device: str | None, dtype: str | None,
         allow_pickle: bool):
    """``--model`` as typed -> a ``FlipSketchPipeline`` (see ``flipsketch.plugins.Backbone``)."""
    builtin = get_manager().get("backbone", "modelscope")
    return builtin(ALIASES.get(model, model), unet=unet, device=device, dtype=dtype,
                   allow_pickle=allow_pickle)


@hookimpl
def register_backbones(register: Register) -> None:
    register("$name", load)
''',
        test='''

def test_loads_its_own_model_name():
    from flipsketch.api import FlipSketchPipeline, load_pipeline

    pipe = load_pipeline("$name", device="cpu", backbone="$name", manager=manager())
    assert isinstance(pipe, FlipSketchPipeline)
    assert pipe.model_resolution > 0
''',
    ),
    "command": Kind(
        hook="register_commands",
        summary="adds the command 'flipsketch $name'.",
        usage="flipsketch $name Ada",
        module='''\
"""A flipsketch command plugin: ``flipsketch $name [WHO]``.

Commands are registered when ``flipsketch`` starts, before it reads its arguments, so that
``flipsketch --help`` lists them: import anything heavy (torch, ``flipsketch.api``) inside
the command function, not at the top of this module.
"""

from __future__ import annotations

import typer

from flipsketch.plugins import hookimpl


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    @cli.command("$name")
    def greet(who: str = typer.Argument("world", help="Whom to greet.")) -> None:
        """Say hello (replace with what your command does)."""
        typer.echo(f"hello, {who}")
''',
        test='''

def test_the_command_runs_through_flipsketch(capsys):
    import pytest

    import flipsketch.cli
    from flipsketch.plugins import get_manager

    get_manager().register($module, name="$name")  # as if installed; no-op if it is
    with pytest.raises(SystemExit) as exit:
        flipsketch.cli.main(["$name", "Ada"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == "hello, Ada\\n"
''',
    ),
}


@dataclass(frozen=True)
class Skeleton:
    """The files of one plugin package, by path relative to its folder."""

    distribution: str  # flipsketch-NAME, the folder's name too
    files: dict[str, str]


def plugin_name(name: str) -> str:
    """``flipsketch-thick`` or ``thick`` -> ``thick``; anything else is a ``UsageError``."""
    name = name.removeprefix(PREFIX)
    if not NAME.fullmatch(name):
        raise UsageError(f"plugin name '{name}' must be lowercase letters, digits and single "
                         f"hyphens, starting with a letter; pass a name such as 'blue-ink'")
    return name


def skeleton(name: str, kind: str) -> Skeleton:
    """The package ``plugins new NAME --kind KIND`` writes."""
    if kind not in KINDS:
        raise UsageError(f"unknown plugin kind '{kind}'; pass --kind with one of: "
                         f"{', '.join(KINDS)}")
    name = plugin_name(name)
    spec = KINDS[kind]
    module = "flipsketch_" + name.replace("-", "_")
    values = {"name": name, "module": module, "distribution": PREFIX + name, "kind": kind,
              "group": ENTRY_POINT_GROUP, "hook": spec.hook, "suffix": f".{name}.png"}
    values["summary"] = Template(spec.summary).substitute(values)
    values["usage"] = Template(spec.usage).substitute(values)

    def fill(template: str) -> str:
        return Template(template).substitute(values)

    return Skeleton(PREFIX + name, {
        "pyproject.toml": fill(PYPROJECT),
        "README.md": fill(README),
        f"{module}/__init__.py": fill(spec.module),
        f"tests/test_{module.removeprefix('flipsketch_')}.py": fill(TEST_HEADER + spec.test),
    })


def write_skeleton(name: str, kind: str, parent: Path, force: bool = False) -> Path:
    """Write the package into ``parent/flipsketch-NAME`` and return that folder.

    Refuses a folder that holds files unless ``force`` (then it is replaced whole); the
    package is written to a hidden sibling and renamed into place, so an interrupted run
    leaves no half-written package.
    """
    package = skeleton(name, kind)
    target = Path(parent) / package.distribution
    check_writable_folder(target, force, what="NAME or --dir")
    with atomic_path(target, force=True, suffix="") as tmp:
        for relative, text in package.files.items():
            path = tmp / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return target
