"""The plugin system: registration, stage replacement, selection and broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flipsketch import hookimpl
from flipsketch.api import SamplerSettings, animate, load_pipeline
from flipsketch.errors import PluginError
from flipsketch.plugins import PluginManager


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


def test_registering_a_name_twice_names_both_plugins():
    class Clash:
        @hookimpl
        def register_inverters(self, register) -> None:
            register("ddim", lambda *a: None)

    manager = PluginManager()
    manager.register(Clash(), name="clash")
    with pytest.raises(PluginError, match="'clash'.*'inversion'"):
        manager.get("inverter", "ddim")


def make_distribution(site: Path, name: str, module_source: str) -> None:
    """A real installed distribution on a path: dist-info with a flipsketch entry point."""
    dist = site / f"{name}-0.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(f"[flipsketch]\n{name} = {name}_plugin\n")
    (site / f"{name}_plugin.py").write_text(module_source)


def run_plugins_command(site: Path, **env: str):
    return subprocess.run(
        [sys.executable, "-m", "flipsketch", "plugins", "--json"], capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(site), **env}, timeout=300,
    )


def test_broken_and_filtered_third_party_plugins(tmp_path):
    make_distribution(tmp_path, "broken", "raise ImportError('needs libfoo')\n")
    make_distribution(tmp_path, "sepia", (
        "from flipsketch import hookimpl\n"
        "@hookimpl\n"
        "def register_postprocessors(register):\n"
        "    register('sepia', lambda frames, settings: frames)\n"))

    result = run_plugins_command(tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "plugin 'broken'" in lines[0] and "needs libfoo" in lines[0]
    assert "Traceback" not in result.stderr

    result = run_plugins_command(tmp_path, FLIPSKETCH_LOAD_PLUGINS="sepia")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["stages"]["postprocessor"]["implementations"]["sepia"] == "sepia"
    sepia = [p for p in info["plugins"] if p["name"] == "sepia"][0]
    assert sepia["version"] == "0.3" and not sepia["builtin"]

    result = run_plugins_command(tmp_path, FLIPSKETCH_LOAD_PLUGINS="")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert all(p["builtin"] for p in info["plugins"])
    assert info["stages"]["composer"]["default"] == "flipsketch"  # own plugins always load
