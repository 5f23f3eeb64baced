"""The plugin system: registration, stage replacement, selection and broken plugins."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import flipsketch.builtins.writers
import flipsketch.cli
from flipsketch import hookimpl
from flipsketch.api import SamplerSettings, animate, load_pipeline
from flipsketch.errors import PluginError
from flipsketch.frames.writers import check_output_path
from flipsketch.plugins import (
    BUILTIN_PLUGINS,
    COMMANDS_HOOK,
    ENTRY_POINT_GROUP,
    STAGES,
    Composition,
    PluginManager,
    Writer,
    get_manager,
    hookspecs,
)
from flipsketch.plugins.manager import own_entry_points
from flipsketch.sampler import attention

from testing import make_distribution

ROOT = Path(__file__).resolve().parents[1]


class RecordingAligner:
    """A third-party aligner: keeps the latents and records when the sampler called it."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    @hookimpl
    def register_aligners(self, register) -> None:
        def align(pipe, latents, ref_latent, t, cond_embeds, target, settings):
            self.calls.append(int(t))
            return latents, [0.0]

        register("recording", align)


@pytest.fixture
def manager_with_plugin():
    manager = PluginManager()
    plugin = RecordingAligner()
    manager.register(plugin, name="recording-plugin")
    yield manager, plugin
    manager.unregister("recording-plugin")
    with pytest.raises(PluginError, match="unknown aligner 'recording'"):
        manager.get("aligner", "recording")


def test_a_plugin_replaces_a_stage_and_is_unregistered_afterwards(manager_with_plugin,
                                                                     tiny_model_dir):
    manager, plugin = manager_with_plugin
    pipe = load_pipeline(str(tiny_model_dir), manager=manager)
    settings = SamplerSettings(num_frames=4, num_inference_steps=5, tau1=2)
    sketch = torch.ones(64, 64).numpy()
    sketch[20:40, 30] = 0
    from PIL import Image

    [clip] = animate(pipe, "a fish", Image.fromarray((sketch * 255).astype("uint8")),
                     settings, aligner="recording", manager=manager)
    pipe.scheduler.set_timesteps(5)
    assert plugin.calls == [int(t) for t in pipe.scheduler.timesteps[:2]]
    assert clip.frames.shape == (4, 64, 64)
    assert manager.describe()["stages"]["aligner"]["implementations"]["recording"] == \
        "recording-plugin"


def test_none_switches_optional_stages_off_but_not_others():
    manager = PluginManager()
    assert manager.get("aligner", "none") is None
    assert manager.get("composer", "none") is None
    with pytest.raises(PluginError, match="unknown inverter 'none'"):
        manager.get("inverter", "none")


def test_registering_a_name_twice_leaves_the_later_plugin_out_naming_both():
    class Clash:
        @hookimpl
        def register_inverters(self, register) -> None:
            register("fresh", lambda *a: None)
            register("ddim", lambda *a: None)

    manager = PluginManager()
    builtin = manager.get("inverter", "ddim")
    manager.register(Clash(), name="clash")
    assert manager.get("inverter", "ddim") is builtin  # contained: the built-in stays
    [broken] = manager.broken
    assert broken.name == "clash" and "clash" not in [p.name for p in manager.plugins]
    assert broken.error == "registers inverter 'ddim', already registered by 'inversion'"
    # What it registered before failing is gone, and asking for it names the culprit.
    with pytest.raises(PluginError, match="inverter 'fresh' comes from plugin 'clash', which "
                                          "failed to load"):
        manager.get("inverter", "fresh")


def test_a_plugin_raising_while_registering_is_left_out_whole():
    class Half:
        @hookimpl
        def register_writers(self, register) -> None:
            register("half", Writer("half", (".half",), lambda f, p, fps: None))

        @hookimpl
        def register_postprocessors(self, register) -> None:
            raise RuntimeError("no\nlicence")

    manager = PluginManager()
    manager.register(Half(), name="half")
    with pytest.raises(PluginError) as error:
        manager.get("postprocessor", "sepia")
    assert str(error.value) == (
        "unknown postprocessor 'sepia'; choose one of: binarize, lineart, raw (plugin 'half' "
        "failed to load and may provide it; see 'flipsketch plugins')")
    assert "half" not in manager.registry("writer").impls
    [broken] = manager.describe()["broken"]
    assert broken["error"] == "raised in register_postprocessors: RuntimeError: no licence"
    assert broken["message"].startswith("plugin 'half' ((registered in code)) failed to load")


def test_broken_and_filtered_third_party_plugins(cli, fresh_plugins, tmp_path, monkeypatch,
                                                  request):
    make_distribution(tmp_path, "broken", "raise ImportError('needs libfoo')\n")
    make_distribution(tmp_path, "sepia", (
        "from flipsketch import hookimpl\n"
        "@hookimpl\n"
        "def register_postprocessors(register):\n"
        "    register('sepia', lambda frames, settings: frames)\n"))
    # Installed on the import path of this process, for this test only; each command then
    # loads the plugins afresh, as a new process would.
    monkeypatch.syspath_prepend(str(tmp_path))
    request.addfinalizer(lambda: sys.modules.pop("sepia_plugin", None))

    def run_plugins_command(**env: str):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        if not env:
            monkeypatch.delenv("FLIPSKETCH_LOAD_PLUGINS", raising=False)
        fresh_plugins()
        return cli("plugins", "--json")

    # The broken plugin is listed, not fatal: this is the command that diagnoses it.
    result = run_plugins_command()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    info = json.loads(result.stdout)
    [broken] = info["broken"]
    assert broken["name"] == "broken" and broken["error"] == "ImportError: needs libfoo"
    assert "sepia" in info["stages"]["postprocessor"]["implementations"]  # the others load

    # Any other command warns in one line and goes on; asking for what may be the broken
    # plugin's names it.
    result = cli("plugins", "new", "x", "--kind", "nope")  # "plugins ..." subcommands list
    assert "warning" not in result.stderr
    result = cli("animate", "missing.png", "a fish", "--postprocessor", "thick",
                 cwd=tmp_path)
    assert result.returncode == 2
    warning, error = result.stderr.strip().splitlines()
    assert warning == ("warning: plugin 'broken' failed to load (ImportError: needs libfoo); "
                       "run 'flipsketch plugins' for details")
    assert "unknown postprocessor 'thick'" in error and "plugin 'broken'" in error, error
    assert "Traceback" not in result.stderr

    result = run_plugins_command()
    listing = cli("plugins")
    assert "Broken plugins" in listing.stdout and "needs libfoo" in listing.stdout

    result = run_plugins_command(FLIPSKETCH_LOAD_PLUGINS="sepia")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["stages"]["postprocessor"]["implementations"]["sepia"] == "sepia"
    sepia = [p for p in info["plugins"] if p["name"] == "sepia"][0]
    assert sepia["version"] == "0.3" and not sepia["builtin"]

    result = run_plugins_command(FLIPSKETCH_LOAD_PLUGINS="")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert all(p["builtin"] for p in info["plugins"])
    assert info["stages"]["composer"]["default"] == "flipsketch"  # own plugins always load


# -- one plugin API: the stage table, the built-ins, the types ------------------------------
def test_builtin_implementations_are_registered_from_flipsketch_builtins_only():
    """One place registers the built-ins, through the entry-point group third-party plugins
    use: every module of ``flipsketch.builtins`` is a built-in plugin, no other module of the
    package implements a hook (the algorithms know nothing of the plugin system), and
    pyproject.toml lists exactly these modules as flipsketch's entry points, as installed."""
    import ast

    package = Path(flipsketch.cli.__file__).parents[1]
    builtins = sorted(path.stem for path in (package / "builtins").glob("*.py")
                      if path.stem != "__init__")
    assert sorted(BUILTIN_PLUGINS) == builtins
    assert all(module == f"flipsketch.builtins.{name}"
               for name, module in BUILTIN_PLUGINS.items())
    hooks = {name for name in dir(hookspecs) if name.startswith("register_")}
    outside = sorted(
        f"{path.relative_to(package)}: {node.name}"
        for path in package.rglob("*.py") if path.parent.name != "builtins"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name in hooks
        and any(getattr(d, "id", getattr(d, "attr", None)) == "hookimpl"
                for d in node.decorator_list))
    assert outside == []
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"][ENTRY_POINT_GROUP] == BUILTIN_PLUGINS
    assert {ep.name: ep.value for ep in own_entry_points()} == BUILTIN_PLUGINS


def test_builtins_load_without_entry_points():
    """What a source tree gets whatever its installed entry points say."""
    manager = PluginManager(load_entry_points=False)
    assert [p.name for p in manager.plugins] == list(BUILTIN_PLUGINS)
    assert all(p.builtin and p.distribution == "flipsketch" and p.version
               for p in manager.plugins)
    for stage in STAGES.values():
        if stage.default is not None:
            assert manager.registry(stage.name).owners[stage.default] in BUILTIN_PLUGINS
    assert "word" in manager.registry("recipe_step").impls
    manager.register(flipsketch.builtins.writers)  # already there: nothing changes
    assert len(manager.plugins) == len(BUILTIN_PLUGINS)


def test_builtins_load_from_a_checkout_whose_entry_points_are_missing(monkeypatch):
    """Run from ``src`` without installing (no metadata): the built-ins still load, by the
    module names BUILTIN_PLUGINS gives, in the same order."""
    import flipsketch.plugins.manager as manager_module

    monkeypatch.setattr(manager_module, "own_entry_points", lambda: [])
    manager = PluginManager(load_entry_points=False)
    assert [p.module for p in manager.plugins] == list(BUILTIN_PLUGINS.values())
    assert manager.get("writer", "gif").suffixes == (".gif",)


def test_one_stage_per_hook():
    hooks = {name for name in dir(hookspecs) if name.startswith("register_")}
    assert {stage.hook for stage in STAGES.values()} == hooks - {COMMANDS_HOOK}
    for stage in STAGES.values():  # every hook's documentation names its stage's type
        assert stage.protocol.__name__ in getattr(hookspecs, stage.hook).__doc__


def test_builtin_implementations_have_their_stage_signature():
    manager = PluginManager(load_entry_points=False)
    for stage in STAGES.values():
        for name, impl in manager.registry(stage.name).impls.items():
            if dataclasses.is_dataclass(stage.protocol):  # Writer, StepType
                assert isinstance(impl, stage.protocol), (stage.name, name)
                continue
            expected = list(inspect.signature(stage.protocol.__call__).parameters)[1:]
            assert list(inspect.signature(impl).parameters) == expected, (stage.name, name)
    methods = [m for m, v in vars(Composition).items() if inspect.isfunction(v)
               and not m.startswith("_")]
    assert methods == ["capture", "compose", "remove"]
    assert all(callable(getattr(attention.Composition, m)) for m in methods)


def test_the_plugin_layer_imports_no_other_layer():
    code = ("import sys, flipsketch.plugins; print(sorted(m for m in sys.modules if "
            "m.split('.')[0] == 'torch' or m.split('.')[:2] in (['flipsketch', 'sampler'], "
            "['flipsketch', 'models'], ['flipsketch', 'frames'], ['flipsketch', 'recipes'])))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


class SecondGif:
    """A third-party writer that also claims ".gif" (in capitals, which still clashes)."""

    @hookimpl
    def register_writers(self, register) -> None:
        register("fancy-gif", Writer("fancy-gif", (".GIF", ".fancy"), lambda f, p, fps: None))


def test_writer_suffix_clash_is_listed_with_the_writer_that_wins(tmp_path):
    manager = get_manager()
    manager.register(SecondGif(), name="second-gif")
    try:
        runner = CliRunner()
        result = runner.invoke(flipsketch.cli.app, ["plugins", "--json"])
        assert result.exit_code == 0, result.output
        [clash] = [c for c in json.loads(result.stdout)["writer_suffix_clashes"]
                   if c["suffix"] == ".gif"]
        assert clash == {"suffix": ".gif", "writers": ["gif", "fancy-gif"], "wins": "gif",
                         "owners": ["writers", "second-gif"]}
        # The report says what saving does.
        assert check_output_path(tmp_path / "a.gif", manager=manager).name == "gif"
        assert check_output_path(tmp_path / "a.fancy", manager=manager).name == "fancy-gif"

        result = runner.invoke(flipsketch.cli.app, ["plugins"], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert "Writer suffix clashes" in result.stdout
        row = [line for line in result.stdout.splitlines() if ".gif " in line]
        assert len(row) == 1 and "fancy-gif (second-gif)" in row[0]
    finally:
        manager.unregister("second-gif")
    assert get_manager().describe()["writer_suffix_clashes"] == []
