"""The inverters that encode the drawing as the authors' demo did, one difference at a time.

``ddim`` encodes the drawing as the paper reads (VAE input in [-1, 1], the posterior's mode,
one frame); ``ddim-unit-range``, ``ddim-sampled`` and ``ddim-5-copies`` each change one of
those to the demo's choice, ``ddim-demo`` all three. docs/evaluation.md measures what each
changes on the embedded model; here, that each does what it says, through the real sampler,
the real inversion cache and the command line.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from flipsketch.api import SamplerSettings, animate
from flipsketch.plugins import SketchEncoding, get_manager, sketch_encoding
from flipsketch.sampler.inversion import DEMO_ENCODINGS, EncodedInverter, ddim_invert

from testing import shared_sketch


def binary_sketch(size: int = 64) -> torch.Tensor:
    """(H, W) in {0, 1}: ink 0, paper 1 (exact in either VAE range)."""
    sketch = torch.ones(size, size)
    sketch[20:44, 30:33] = 0
    sketch[12:14, 10:54] = 0
    return sketch


def drawing() -> Image.Image:
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).line([(10, 12), (50, 40)], fill=0, width=3)
    return image


def test_each_difference_of_the_demo_is_an_inverter_of_its_own():
    manager = get_manager()
    assert sketch_encoding(manager.get("inverter", "ddim")) == SketchEncoding()
    assert sketch_encoding(manager.get("inverter", None)) == SketchEncoding()  # the default
    assert set(DEMO_ENCODINGS) == {"ddim-unit-range", "ddim-sampled", "ddim-5-copies",
                                   "ddim-demo"}
    for name, encoding in DEMO_ENCODINGS.items():
        inverter = manager.get("inverter", name)
        assert sketch_encoding(inverter) == encoding
    assert DEMO_ENCODINGS["ddim-demo"] == SketchEncoding(unit_range=True, sample=True, copies=5)
    changed = [{k for k, v in vars(e).items() if v != vars(SketchEncoding())[k]}
               for name, e in DEMO_ENCODINGS.items() if name != "ddim-demo"]
    assert changed == [{"unit_range"}, {"sample"}, {"copies"}]  # one difference each


@torch.no_grad()
def test_the_drawing_is_encoded_as_the_encoding_says(tiny_pipe):
    sketch = binary_sketch()
    mode = tiny_pipe.encode_sketch(sketch)
    assert mode.shape == (1, 4, 1, 8, 8)
    # [0, 1] into the VAE: the drawing the [-1, 1] encoder would see as (sketch + 1) / 2.
    unit = tiny_pipe.encode_sketch(sketch, SketchEncoding(unit_range=True))
    assert torch.equal(unit, tiny_pipe.encode_sketch((sketch + 1) / 2))
    assert not torch.allclose(unit, mode)
    # Copies of the mode are the same latent F times, as one clip.
    copies = tiny_pipe.encode_sketch(sketch, SketchEncoding(copies=5))
    assert copies.shape == (1, 4, 5, 8, 8)
    assert all(torch.equal(copies[:, :, [f]], mode) for f in range(5))
    # A sample: not the mode, the same every run (the inversion stays cacheable), its seed
    # its own; copies are independent samples.
    sampled = tiny_pipe.encode_sketch(sketch, SketchEncoding(sample=True))
    assert not torch.allclose(sampled, mode)
    assert torch.equal(sampled, tiny_pipe.encode_sketch(sketch, SketchEncoding(sample=True)))
    assert not torch.equal(sampled, tiny_pipe.encode_sketch(
        sketch, SketchEncoding(sample=True, sample_seed=1)))
    clip = tiny_pipe.encode_sketch(sketch, SketchEncoding(sample=True, copies=2))
    assert not torch.equal(clip[:, :, 0], clip[:, :, 1])


def test_the_sampler_inverts_the_copies_as_one_clip_and_averages_them(tiny_pipe):
    seen = []

    def spread(pipe, latent, null_embeds, timesteps):
        """DDIM inversion of the clip, its frames then pushed apart around their mean."""
        seen.append(tuple(latent.shape))
        offsets = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 3, 1, 1)  # mean 0
        return ddim_invert(pipe, latent, null_embeds, timesteps) + offsets

    def run(inverter):
        return tiny_pipe("a fish", binary_sketch(), num_frames=3, num_inference_steps=4,
                         seeds=[2], inverter=inverter).frames

    copies = run(EncodedInverter(spread, SketchEncoding(copies=3)))
    assert seen == [(1, 4, 3, 8, 8)]  # one clip of 3 copies
    # The random test UNet treats identical frames alike (its temporal layers start as the
    # identity), so the clip's inversion is the one frame's, and the average removes the
    # spread: the same frames as plain ``ddim`` (frame 0 alone would be 1 away).
    torch.testing.assert_close(copies, run(ddim_invert), rtol=0, atol=1e-5)


def test_each_encoding_keeps_its_own_cache_entries(tiny_pipe, tmp_path):
    settings = SamplerSettings(num_frames=3, num_inference_steps=4, seed=1)
    frames = {}
    for name in ("ddim", "ddim-demo", "ddim-demo", "ddim-sampled"):
        [clip] = animate(tiny_pipe, "a line", drawing(), settings, inverter=name,
                         cache=tmp_path)
        frames.setdefault(name, []).append((clip.frames, clip.inversion_cached))
    assert [hit for _, hit in frames["ddim-demo"]] == [False, True]  # a re-run reuses it
    assert frames["ddim"][0][1] is False and frames["ddim-sampled"][0][1] is False
    np.testing.assert_array_equal(frames["ddim-demo"][0][0], frames["ddim-demo"][1][0])
    assert not np.array_equal(frames["ddim"][0][0], frames["ddim-demo"][0][0])
    assert len(list(tmp_path.glob("*.safetensors"))) == 3


def test_the_command_line_takes_them_by_name(cli, tiny_model_dir, tmp_path):
    sketch = shared_sketch("fish.png")
    result = cli("animate", sketch, "a fish", "--model", tiny_model_dir, "--inverter",
                 "ddim-5-copies", "--steps", "2", "--frames", "2", "--size", "32", "-o",
                 tmp_path / "fish.gif")
    assert result.returncode == 0, result.stderr
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    (sketches / "fish.png").write_bytes(sketch.read_bytes())
    unknown = cli("eval", "sketch", sketches, "--inverter", "ddim-nope", "--model",
                  tmp_path / "no-model")
    assert unknown.returncode == 2 and "ddim-nope" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", sorted(DEMO_ENCODINGS))
def test_recipes_and_manifests_name_them_as_the_command_line(name, tmp_path):
    from flipsketch.batch import read_manifest

    (tmp_path / "fish.png").write_bytes(shared_sketch("fish.png").read_bytes())
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"sketch,prompt,inverter\nfish.png,a fish,{name}\n")
    [job] = read_manifest(manifest).jobs
    assert job.stages["inverter"] == name
