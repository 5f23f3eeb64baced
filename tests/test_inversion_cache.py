"""Invert a drawing once: the cached x_T^r is reused exactly when nothing it depends on changed."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from flipsketch.api import SamplerSettings, animate
from flipsketch.files import user_cache_dir
from flipsketch.sampler.inversion_cache import KILLED_WRITE_AGE_S, module_fingerprint

from testing import clips_of_call, shared_sketch

# Without alignment, whose target (the reference alone) is a one-frame pass like the
# inversion's, the first pass after the inversion is a step's reference and joint passes.
SETTINGS = SamplerSettings(num_frames=3, num_inference_steps=4, seed=1, align=False)


def drawing(offset: int = 0) -> Image.Image:
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).line([(10 + offset, 12), (50, 40 + offset)], fill=0, width=3)
    return image


def inversion_passes(pipe) -> list[int]:
    """One entry per one-frame UNet call made before the first call on anything else (the
    inversion's passes), counted per ``animate``."""
    passes: list[int] = []

    def hook(module, args):
        if [x.shape[0] * x.shape[2] for x in clips_of_call(module, args[0])] != [1]:
            passes.append(-1)  # sampling started
        elif -1 not in passes:
            passes.append(1)

    pipe.unet.register_forward_pre_hook(hook)
    return passes


def run(pipe, prompt="a line", image=None, passes=None, **kwargs):
    if passes is not None:
        passes.clear()
    [clip] = animate(pipe, prompt, image if image is not None else drawing(), **kwargs)
    return clip


def entries() -> list:
    return sorted((user_cache_dir() / "inversions").glob("*.safetensors"))


def test_a_second_prompt_or_seed_reuses_the_inversion_and_gives_the_same_frames(tiny_pipe):
    passes = inversion_passes(tiny_pipe)
    first = run(tiny_pipe, settings=SETTINGS, passes=passes)
    assert first.inversion_cached is False and passes.count(1) == 4 and len(entries()) == 1

    again = run(tiny_pipe, settings=SETTINGS, passes=passes)
    assert again.inversion_cached is True and passes.count(1) == 0  # no inversion pass
    np.testing.assert_array_equal(again.frames, first.frames)  # bit for bit

    other = run(tiny_pipe, "a line moving left", settings=SamplerSettings(
        num_frames=3, num_inference_steps=4, seed=9), passes=passes)
    assert other.inversion_cached is True and len(entries()) == 1
    uncached = run(tiny_pipe, "a line moving left", settings=SamplerSettings(
        num_frames=3, num_inference_steps=4, seed=9), cache=False)
    np.testing.assert_array_equal(other.frames, uncached.frames)


@pytest.mark.parametrize("change", ["drawing", "steps", "weights", "inverter"])
def test_anything_the_inversion_depends_on_misses_the_cache(tiny_pipe, change):
    run(tiny_pipe, settings=SETTINGS)
    image, settings, kwargs = drawing(), SETTINGS, {}
    if change == "drawing":
        image = drawing(offset=6)
    elif change == "steps":
        settings = SamplerSettings(num_frames=3, num_inference_steps=5, seed=1)
    elif change == "weights":  # what a LoRA or another fine-tune does to one tensor
        with torch.no_grad():
            tiny_pipe.unet.conv_out.weight.mul_(1.01)
    else:
        kwargs["inverter"] = "ddim-copy"
    if change == "inverter":
        from flipsketch.plugins import PluginManager, hookimpl
        from flipsketch.sampler.inversion import ddim_invert

        class Copy:
            @hookimpl
            def register_inverters(self, register):
                register("ddim-copy", ddim_invert)

        manager = PluginManager()
        manager.register(Copy(), name="copy")
        kwargs["manager"] = manager
    clip = run(tiny_pipe, image=image, settings=settings, **kwargs)
    assert clip.inversion_cached is False and len(entries()) == 2


def test_no_cache_neither_reads_nor_writes(tiny_pipe):
    clip = run(tiny_pipe, settings=SETTINGS, cache=False)
    assert clip.inversion_cached is None and entries() == []


def test_a_damaged_or_unwritable_cache_never_fails_a_run(tiny_pipe, tmp_path):
    first = run(tiny_pipe, settings=SETTINGS)
    [entry] = entries()
    entry.write_bytes(b"not safetensors")
    damaged = run(tiny_pipe, settings=SETTINGS)
    assert damaged.inversion_cached is False  # recomputed, and the entry rewritten
    np.testing.assert_array_equal(damaged.frames, first.frames)
    assert run(tiny_pipe, settings=SETTINGS).inversion_cached is True

    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    clip = run(tiny_pipe, settings=SETTINGS, cache=blocked / "inversions")
    np.testing.assert_array_equal(clip.frames, first.frames)


def test_a_torn_entry_is_recomputed_and_a_killed_writes_temporary_goes_once_old(tiny_pipe,
                                                                                tmp_path):
    """What a kill can leave: an entry cut short (a copy interrupted outside flipsketch; its
    own writes rename whole files into place) is a miss; a killed write's temporary goes at
    the next write once older than any write could take, a fresh one (another run's write in
    progress) stays."""
    first = run(tiny_pipe, settings=SETTINGS, cache=tmp_path)
    [entry] = list(tmp_path.glob("*.safetensors"))
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    old = tmp_path / f".{entry.name}.1a2b3c4d.tmp.safetensors"
    fresh = tmp_path / f".{entry.name}.5e6f7a8b.tmp.safetensors"
    for left in (old, fresh):
        left.write_bytes(b"half an entry")
    an_hour_ago = time.time() - KILLED_WRITE_AGE_S - 60
    os.utime(old, (an_hour_ago, an_hour_ago))
    torn = run(tiny_pipe, settings=SETTINGS, cache=tmp_path)
    assert torn.inversion_cached is False
    np.testing.assert_array_equal(torn.frames, first.frames)
    assert not old.exists() and fresh.exists()


def test_the_fingerprint_sees_every_tensor_and_adapter_scale(tiny_pipe):
    unet = tiny_pipe.unet
    before = module_fingerprint(unet)
    assert module_fingerprint(unet) == before
    with torch.no_grad():
        unet.conv_in.bias[0] += 1e-3
    assert module_fingerprint(unet) != before


def test_the_folder_keeps_the_newest_entries(tiny_pipe, tmp_path, monkeypatch):
    import flipsketch.sampler.inversion_cache as inversion_cache

    monkeypatch.setattr(inversion_cache, "MAX_ENTRIES", 2)
    for offset in range(3):
        run(tiny_pipe, image=drawing(offset), settings=SETTINGS, cache=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert run(tiny_pipe, image=drawing(2), settings=SETTINGS, cache=tmp_path).inversion_cached
    assert not run(tiny_pipe, image=drawing(0), settings=SETTINGS,
                   cache=tmp_path).inversion_cached


def test_animate_reports_and_no_cache_bypasses_it_on_the_command_line(cli, tiny_model_dir,
                                                                      tmp_path):
    sketch = shared_sketch("cat.png")
    args = ["animate", str(sketch), "a cat", "--model", str(tiny_model_dir), "--frames", "3",
            "--steps", "3", "--json", "--size", "32"]

    first = cli(*args, "-o", str(tmp_path / "a.gif"))
    second = cli(*args, "-o", str(tmp_path / "b.gif"))
    bypass = cli(*args, "--no-cache", "-o", str(tmp_path / "c.gif"))
    assert (first.returncode, second.returncode, bypass.returncode) == (0, 0, 0)
    cached = [json.loads(r.stdout)["inversion_cached"] for r in (first, second, bypass)]
    assert cached == [False, True, None]

