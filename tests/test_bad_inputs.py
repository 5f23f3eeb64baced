"""The bad-input corpus: every strange thing a user may hand the CLI, one parametrised case
each, through the real entry point (conftest's ``cli``).

A bad case must end with exit code 2 (1 for a full disk, which is not the user's input), one
``error:`` line naming the problem and the fix, no traceback, nothing new in the working
folder and every file already there byte-for-byte as it was. The odd inputs that deserve to
work (an 8000 px drawing, an animated GIF, a 16-bit scan, a 10,000-character prompt...) must
work, with at most the documented ``warning:`` lines. README "Reliability" quotes the counts.

Each case is a command line with placeholders: ``{a}`` the module's folder of odd inputs
(built once), ``{m}`` the tiny random model, ``{fast}`` that model with tiny settings; the
command runs in a fresh working folder holding ``precious.gif`` and ``drawing.png``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from flipsketch.errors import FlipSketchWarning
from flipsketch.models.footprint import ModelFootprint, estimate_peak_bytes

from testing import assert_one_line_error, read_animation

FAST = "--model {m} --steps 2 --frames 3 --size 32"


# name: (command line, words its one error line must hold)
BAD = {
    # -- drawings
    "missing file": ("animate {a}/nope.png 'a cat' -o out.gif", ["nope.png", "does not exist"]),
    "empty file": ("animate {a}/empty.png 'a cat' -o out.gif", ["empty"]),
    "not an image": ("animate {a}/notes.txt 'a cat' -o out.gif", ["not an image"]),
    "corrupt png": ("animate {a}/broken.png 'a cat' -o out.gif", ["broken.png"]),
    "truncated jpeg": ("animate {a}/cut.jpg 'a cat' -o out.gif", ["cut.jpg", "corrupt"]),
    "folder as drawing": ("animate {a} 'a cat' -o out.gif", ["is a folder"]),
    "decompression bomb": ("animate {a}/bomb.png 'a cat' -o out.gif", ["too large"]),
    "bomb under twice the limit": ("animate {a}/bomb-small.png 'a cat' -o out.gif",
                                   ["too large"]),
    "all white": ("animate {a}/white.png 'a cat' -o out.gif", ["blank", "generate"]),
    "all transparent": ("animate {a}/clear.png 'a cat' -o out.gif", ["blank"]),
    "all black": ("animate {a}/black.png 'a cat' -o out.gif", ["no strokes"]),
    "one pixel": ("animate {a}/dot.png 'a cat' -o out.gif", ["1x1", "16 pixels"]),
    "svg drawing": ("animate {a}/cat.svg 'a cat' -o out.gif", ["SVG", "rsvg-convert"]),
    # -- prompts
    "empty prompt": ("animate {a}/ok.png '' -o out.gif", ["prompt is empty"]),
    "blank prompt": ("animate {a}/ok.png '  \t ' -o out.gif", ["prompt is empty"]),
    "bell in prompt": ("animate {a}/ok.png 'a cat\x07' -o out.gif", ["U+0007", "remove"]),
    "escape sequence in prompt": ("animate {a}/ok.png '\x1b[31ma red cat' -o out.gif",
                                  ["U+001B"]),
    "generate without prompt": ("generate '' -o out.gif", ["prompt is empty"]),
    # -- outputs
    "unwritable folder": ("animate {a}/ok.png 'a cat' -o {locked}/out.gif", ["cannot write"]),
    "missing output folder": ("animate {a}/ok.png 'a cat' -o no/such/out.gif",
                              ["out.gif", "does not exist"]),
    "output under a file": ("animate {a}/ok.png 'a cat' -o precious.gif/out.gif",
                            ["precious.gif", "does not exist"]),
    "folder where a file is asked": ("animate {a}/ok.png 'a cat' -o {a}/keep.gif --force",
                                     ["keep.gif", "holding other files"]),
    "output is the drawing": ("animate drawing.png 'a cat' -o drawing.png",
                              ["drawing itself"]),
    "output is the drawing, forced": ("animate drawing.png 'a cat' -o drawing.png --force",
                                      ["drawing itself"]),
    "existing output": ("animate {a}/ok.png 'a cat' -o precious.gif", ["exists", "--force"]),
    "unknown output type": ("animate {a}/ok.png 'a cat' -o out.xyz", [".xyz"]),
    "svg frames to a file name": ("animate {a}/ok.png 'a cat' -o out.gif --svg", ["--svg"]),
    # -- models
    "unknown model": ("animate {a}/ok.png 'a cat' --model no_such_model -o out.gif",
                      ["no_such_model"]),
    "truncated weights": ("animate {a}/ok.png 'a cat' {fast} --model {a}/truncated -o out.gif",
                          ["truncated", "diffusion_pytorch_model.safetensors"]),
    "config of another class": ("animate {a}/ok.png 'a cat' {fast} --model {a}/wrong-class "
                                "-o out.gif", ["UNet2DConditionModel"]),
    "model without a vae": ("animate {a}/ok.png 'a cat' {fast} --model {a}/no-vae -o out.gif",
                            ["vae/"]),
    "lora of another model": ("animate {a}/ok.png 'a cat' {fast} --lora {a}/other-lora "
                              "-o out.gif", ["does not fit", "size mismatch"]),
    "lora folder without config": ("animate {a}/ok.png 'a cat' {fast} --lora {a} -o out.gif",
                                   ["adapter_config.json"]),
    "fp16 on cpu": ("animate {a}/ok.png 'a cat' --dtype fp16 --device cpu -o out.gif",
                    ["fp16"]),
    "unknown device": ("animate {a}/ok.png 'a cat' {fast} --device tpu -o out.gif", ["tpu"]),
    "unknown stage": ("animate {a}/ok.png 'a cat' --composer nope -o out.gif",
                      ["composer", "nope"]),
    "unknown compose mode": ("animate {a}/ok.png 'a cat' --compose sideways -o out.gif",
                             ["--compose"]),
    # -- numbers
    "frames past the positions": ("animate {a}/ok.png 'a cat' {fast} --model {a}/positions "
                                  "--frames 6 -o out.gif", ["--frames must be at most 4"]),
    "frames past the maximum": ("animate {a}/ok.png 'a cat' --frames 1000 -o out.gif",
                                ["--frames must be at most 64"]),
    "one frame": ("animate {a}/ok.png 'a cat' --frames 1 -o out.gif", ["--frames", "2"]),
    "size 0": ("animate {a}/ok.png 'a cat' --size 0 -o out.gif", ["--size", "at least 8"]),
    "size 100000": ("generate 'a cat' --size 100000 -o out.gif", ["--size", "at most 4096"]),
    "guidance nan": ("animate {a}/ok.png 'a cat' --guidance nan -o out.gif",
                     ["--guidance", "NaN"]),
    "guidance inf": ("generate 'a cat' --guidance inf -o out.gif", ["--guidance", "infinity"]),
    "lambda above 1": ("animate {a}/ok.png 'a cat' --lambda 1.5 -o out.gif",
                       ["--lambda", "between 0 and 1"]),
    "lambda below 0": ("animate {a}/ok.png 'a cat' --lambda -0.1 -o out.gif",
                       ["--lambda", "between 0 and 1"]),
    "tau2 before tau1": ("animate {a}/ok.png 'a cat' --tau1 10 --tau2 3 -o out.gif",
                         ["--tau2", "tau1"]),
    "lambda and motion": ("animate {a}/ok.png 'a cat' --lambda 1 --motion 0 -o out.gif",
                          ["--lambda", "--motion"]),
    "motion above 1": ("animate {a}/ok.png 'a cat' --motion 2 -o out.gif",
                       ["--motion must be between 0 and 1"]),
    "not a number": ("animate {a}/ok.png 'a cat' --steps many -o out.gif", ["--steps"]),
    "no steps": ("generate 'a cat' --steps 0 -o out.gif", ["--steps", "at least 1"]),
    "fps 0": ("animate {a}/ok.png 'a cat' --fps 0 -o out.gif", ["--fps"]),
    "keep more than sampled": ("animate {a}/ok.png 'a cat' --keep 3 -o out.gif", ["--keep"]),
    "more memory than there is": ("generate 'a cat' {fast} --frames 32 --samples 1000000 "
                                  "-o out.gif", ["needs about", "available", "lower the size"]),
    # -- recipes
    "recipe not found": ("recipe run {a}/nope.yaml -o run", ["nope.yaml", "not found"]),
    "recipe with bad yaml": ("recipe run {a}/bad.yaml -o run", ["bad.yaml:", "YAML"]),
    "recipe with unknown key": ("recipe run {a}/unknown.yaml -o run",
                                ["frobnicate", "unknown key"]),
    "recipe with python tag": ("recipe run {a}/python.yaml -o run", ["not allowed"]),
    "recipe writing outside": ("recipe run {a}/escape.yaml -o run", ["leaves OUTDIR"]),
    # -- training, synthetic data, evaluation
    "train lora without data": ("train lora {a}/no-clips -o adapter", ["no-clips"]),
    "train lora batch 0": ("train lora {a} -o adapter --batch 0", ["--batch must be at least 1"]),
    "train base unknown setting": ("train base -o run --set stages.nope=1", ["nope"]),
    "synth no clips": ("synth clips --clips 0 --seed 1", ["--clips"]),
    "synth clips not a number": ("synth clips --clips many --seed 1", ["--clips"]),
    "eval missing drawing": ("eval fidelity {a}/nope.png {a}/anim.gif", ["nope.png"]),
    # -- plugins and model settings
    "unknown plugins command": ("plugins frobnicate", ["frobnicate"]),
    "plugin with a bad name": ("plugins new 'Bad Name!' --kind writer", ["Bad Name!"]),
    "plugin of an unknown kind": ("plugins new brush --kind paintbrush", ["paintbrush"]),
    "bogus default model": ("models default 'no such model!'", ["no such model!"]),
}

# Odd inputs that must work, and the warning lines each may print (substrings, in order).
WORKS = {
    "8000 px transparent drawing": ("animate {a}/big.png 'a ring' {fast} -o out.gif", []),
    "animated gif": ("animate {a}/fish.gif 'a ring' {fast} -o out.gif",
                     ["fish.gif has 12 frames; using the first"]),
    "animated webp": ("animate {a}/anim.webp 'a ring' {fast} -o out.gif",
                      ["anim.webp has 3 frames; using the first"]),
    "exif-rotated photo": ("animate {a}/phone.jpg 'a ring' {fast} -o out.gif", []),
    "16-bit grey": ("animate {a}/grey16.png 'a ring' {fast} -o out.gif", []),
    "cmyk jpeg": ("animate {a}/print.jpg 'a ring' {fast} -o out.gif", []),
    "palette with transparency": ("animate {a}/palette.png 'a ring' {fast} -o out.gif", []),
    "10,000-character prompt": ("generate '{long}' {fast} -o out.gif",
                                ["longer than the 32 tokens"]),
    "emoji and right-to-left prompt": ("generate '🐟 سمكة تسبح 🌊' {fast} -o out.gif", []),
    "tabs and newlines in prompt": ("generate 'a fish\n\tswimming' {fast} -o out.gif", []),
}

LONG_PROMPT = ("a fish swimming to the right " * 400)[:10_000]


# -- the odd inputs, made once per module -------------------------------------------------------
def ring(size: int, mode: str = "L", ink=0, paper=255) -> Image.Image:
    """A drawing: a ring and a line, ``ink`` on ``paper``, strokes ``size // 16`` wide."""
    image = Image.new(mode, (size, size), paper)
    draw = ImageDraw.Draw(image)
    width = max(1, size // 16)
    draw.ellipse((size // 8, size // 8, size * 7 // 8, size * 7 // 8), outline=ink, width=width)
    draw.line((size // 8, size // 2, size * 7 // 8, size // 2), fill=ink, width=width)
    return image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels and holds almost no data: a
    decompression bomb as Pillow first sees one."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def model_copy(source: Path, folder: Path, edit=None) -> Path:
    shutil.copytree(source, folder)
    if edit is not None:
        edit(folder)
    return folder


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def lora_of_another_model(folder: Path) -> Path:
    """A LoRA trained for a UNet with other widths: same module names, other shapes."""
    from diffusers import UNet3DConditionModel

    from flipsketch.models.lora import inject_lora, save_lora

    other = UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), layers_per_block=1,
        cross_attention_dim=8, attention_head_dim=4, norm_num_groups=4,
    )
    inject_lora(other, rank=2)
    return save_lora(other, folder, base_model="some/other-model")


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_model_dir) -> Path:
    a = tmp_path_factory.mktemp("odd-inputs")
    ring(64).save(a / "ok.png")
    (a / "empty.png").write_bytes(b"")
    (a / "notes.txt").write_text("not a drawing")
    (a / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    ring(64).save(a / "whole.jpg")
    (a / "cut.jpg").write_bytes((a / "whole.jpg").read_bytes()[:300])
    (a / "bomb.png").write_bytes(png_header_only(20_000, 20_000))  # 400 M pixels
    (a / "bomb-small.png").write_bytes(png_header_only(10_000, 10_000))  # 100 M: a warning
    Image.new("L", (64, 64), 255).save(a / "white.png")
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(a / "clear.png")
    Image.new("L", (64, 64), 0).save(a / "black.png")
    Image.new("L", (1, 1), 0).save(a / "dot.png")
    (a / "cat.svg").write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
                               'width="64" height="64"><circle cx="32" cy="32" r="20" '
                               'stroke="black" fill="none"/></svg>\n')
    (a / "keep.gif").mkdir()
    (a / "keep.gif" / "mine.txt").write_text("the user's own file")
    locked = a / "locked"
    locked.mkdir(mode=0o555)
    # -- models
    model_copy(tiny_model_dir, a / "truncated",
               lambda m: truncate(m / "unet" / "diffusion_pytorch_model.safetensors"))
    model_copy(tiny_model_dir, a / "wrong-class", lambda m: edit_json(
        m / "unet" / "config.json", _class_name="UNet2DConditionModel"))
    model_copy(tiny_model_dir, a / "no-vae", lambda m: shutil.rmtree(m / "vae"))
    model_copy(tiny_model_dir, a / "positions", lambda m: edit_json(
        m / "unet" / "config.json", frame_positions=4))
    lora_of_another_model(a / "other-lora")
    # -- recipes
    (a / "bad.yaml").write_text("version: 1\nsteps: [unclosed\n")
    (a / "unknown.yaml").write_text("version: 1\nfrobnicate: 3\n"
                                    "steps:\n  - {name: a, type: generate, prompt: x}\n")
    (a / "python.yaml").write_text("version: 1\nsteps:\n  - name: a\n    type: generate\n"
                                   "    prompt: !!python/object/apply:os.getcwd []\n")
    (a / "escape.yaml").write_text("version: 1\nsteps:\n  - {name: a, type: generate, "
                                   "prompt: x}\n  - {name: w, type: write, input: a, "
                                   "path: ../../escape.gif}\n")
    # -- odd drawings that must work
    big = ring(8000, "RGBA", ink=(0, 0, 0, 255), paper=(0, 0, 0, 0))
    big.save(a / "big.png", compress_level=1)
    frames = [ring(64).rotate(15 * k, fillcolor=255) for k in range(12)]
    frames[0].save(a / "fish.gif", save_all=True, append_images=frames[1:])
    frames[0].save(a / "anim.gif", save_all=True, append_images=frames[1:3])
    frames[0].save(a / "anim.webp", save_all=True, append_images=frames[1:3], lossless=True)
    for name, image in odd_drawings().items():
        image.save(a / name, **image.info.pop("save", {}))
    return a


def odd_drawings() -> dict[str, Image.Image]:
    """Drawings in the odd formats that must load as the plain ``ring(64)`` does: the stored
    pixels differ, what a viewer shows is the ring."""
    portrait = ring(64).transpose(Image.Transpose.ROTATE_90)  # stored rotated...
    exif = portrait.getexif()
    exif[0x0112] = 6  # ...and EXIF says: rotate 90 degrees clockwise to view
    portrait.info["save"] = {"exif": exif, "quality": 95}
    grey16 = Image.fromarray(np.asarray(ring(64), np.uint16) * 257)  # 0..65535
    cmyk = Image.merge("CMYK", [Image.new("L", (64, 64), 0)] * 3
                       + [Image.eval(ring(64), lambda v: 255 - v)])  # K channel = ink
    cmyk.info["save"] = {"quality": 95}
    palette = ring(64).convert("P")
    index_of_white = palette.getpixel((0, 0))
    palette.info["transparency"] = index_of_white  # paper transparent, ink opaque
    return {"phone.jpg": portrait, "grey16.png": grey16, "print.jpg": cmyk,
            "palette.png": palette}


# -- running one case --------------------------------------------------------------------------
def command_line(template: str, assets: Path, model: Path) -> list[str]:
    locked = assets / "locked"
    if os.access(locked, os.W_OK):  # root writes anywhere; /proc/self refuses even root
        locked = Path("/proc/self")
        if os.access(locked, os.W_OK) and "{locked}" in template:  # only the case needing it
            pytest.skip("no folder here refuses writing")
    fast = FAST.format(m=shlex.quote(str(model)))
    filled = template.format(a=shlex.quote(str(assets)), m=shlex.quote(str(model)),
                             fast=fast, locked=locked, long=LONG_PROMPT)
    return shlex.split(filled)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def work(tmp_path, assets) -> Path:
    """The working folder: the user's earlier output and the drawing itself."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "precious.gif").write_bytes(b"GIF89a the user's earlier output")
    shutil.copy(assets / "ok.png", folder / "drawing.png")
    return folder


def test_the_corpus_is_big_enough_and_the_readme_says_how_big():
    assert len(BAD) >= 50
    commands = {template.split()[0] for template, _ in BAD.values()}
    assert {"animate", "generate", "recipe", "train", "synth", "eval", "plugins",
            "models"} <= commands
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"**{len(BAD)} cases**" in readme and f"plus {len(WORKS)} odd inputs" in readme


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_line_and_writes_nothing(cli, assets, tiny_model_dir, work, name):
    template, words = BAD[name]
    before, inputs = snapshot(work), snapshot(assets)
    result = cli(*command_line(template, assets, tiny_model_dir), cwd=work)
    assert_one_line_error(result, *words)
    assert snapshot(work) == before
    assert snapshot(assets) == inputs


@pytest.mark.parametrize("name", WORKS)
def test_odd_input_that_must_work(cli, assets, tiny_model_dir, work, name):
    template, warnings = WORKS[name]
    result = cli(*command_line(template, assets, tiny_model_dir), "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error:" not in result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(said) == len(warnings), result.stderr
    for line, words in zip(said, warnings, strict=True):
        assert words in line, line
    assert read_animation(work / "out.gif").shape[:3] == (3, 32, 32)
    assert sorted(p.name for p in work.iterdir()) == ["drawing.png", "out.gif", "precious.gif"]


@pytest.mark.parametrize("name", [*odd_drawings(), "big.png", "anim.gif"])
def test_odd_drawings_load_as_the_drawing_they_show(assets, name):
    """Ink where the drawing has ink: each odd file gives the plain ring's grey square."""
    from flipsketch.frames.images import load_sketch, to_grey_square

    expected = np.asarray(to_grey_square(ring(64), 64)).astype(int)
    animated = pytest.warns(FlipSketchWarning, match="has 3 frames; using the first")
    with animated if name == "anim.gif" else contextlib.nullcontext():
        loaded = np.asarray(to_grey_square(load_sketch(assets / name), 64)).astype(int)
    ink, paper = expected < 64, expected > 250
    # Not pixel-exact: the 8000 px ring's strokes are drawn at another scale.
    assert (loaded[ink] < 100).mean() > 0.75, name
    assert (loaded[paper] > 200).mean() > 0.93, name


@pytest.mark.slow  # a real process: the file-size limit must not reach pytest itself
def test_a_full_disk_leaves_one_line_and_no_partial_file(tmp_path, tiny_model_dir):
    """RLIMIT_FSIZE makes any write past 1 kB fail with EFBIG, as a full disk fails with
    ENOSPC; SIGXFSZ is ignored so that the write raises instead of killing the process."""
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
        "from flipsketch.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    (tmp_path / "precious.gif").write_bytes(b"GIF89a the user's earlier output")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "FLIPSKETCH_CACHE": str(tmp_path.parent / "cache"),
           "FLIPSKETCH_CONFIG_DIR": str(tmp_path.parent / "config")}
    result = subprocess.run(
        [sys.executable, "-c", script, "generate", "a cat", "--model", str(tiny_model_dir),
         "--steps", "2", "--frames", "3", "--size", "256", "--raw", "-o", "out.gif"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "out.gif" in lines[0] and "disk space" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.gif"]  # no temporary
    assert (tmp_path / "precious.gif").read_bytes() == b"GIF89a the user's earlier output"


# -- the resource guard ------------------------------------------------------------------------
MODELSCOPE = ModelFootprint(  # ModelScope T2V 1.7B at 256 px, as its configs and headers say
    unet_params=1_411_000_000, text_params=340_000_000, vae_params=84_000_000,
    unet_channels=320, vae_channels=128, latent_size=32, latent_channels=4, resolution=256,
    frame_positions=None)


def test_the_estimate_grows_with_every_dimension_of_the_request():
    base = dict(frames=10, samples=1, size=512)
    peak = estimate_peak_bytes(MODELSCOPE, **base, dtype_bytes=2)
    for key, more in [("frames", 20), ("samples", 2), ("size", 1024)]:
        assert estimate_peak_bytes(MODELSCOPE, **{**base, key: more}, dtype_bytes=2) > peak
    assert estimate_peak_bytes(MODELSCOPE, **base, dtype_bytes=4) > peak
    assert estimate_peak_bytes(MODELSCOPE, **base, guidance=False, dtype_bytes=2) < peak


def test_the_estimate_is_of_the_right_scale():
    # ModelScope's whole 1.41 B UNet in bf16, with a small VAE and text encoder, 10 frames at
    # 256 px: README "Benchmarks" measured a peak of 5962 MiB (benchmarks/bench_sampler.py).
    benchmark = replace(MODELSCOPE, text_params=1_000_000, vae_params=1_000_000,
                        vae_channels=32)
    peak = estimate_peak_bytes(benchmark, frames=10, samples=1, size=256, dtype_bytes=2)
    assert 5962 * 2**20 / 1.5 < peak < 5962 * 2**20 * 1.5
    # The embedded model on a CPU, 3 steps in fp32: the peak resident memory over the loaded
    # model's (``resource.getrusage`` in a fresh process) grew by these bytes.
    from flipsketch.models.footprint import read_footprint
    from flipsketch.models.presets import PARTS, TINY_DIR

    tiny = read_footprint({part: TINY_DIR / part for part in PARTS}, "tiny")
    weights = (tiny.unet_params + tiny.text_params + tiny.vae_params) * 4
    for (frames, samples), measured in [((10, 1), 0.41e9), ((10, 4), 1.28e9), ((20, 4), 2.52e9)]:
        extra = estimate_peak_bytes(tiny, frames=frames, samples=samples, size=512) - weights
        assert measured / 1.5 < extra < measured * 1.5, (frames, samples, extra)


def test_an_impossible_request_is_refused_before_the_model_loads(cli, tmp_path,
                                                                 tiny_model_dir):
    # Weights that would fail to load if anything read them past their header.
    model = model_copy(tiny_model_dir, tmp_path / "model")
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    header_end = 8 + struct.unpack("<Q", weights.read_bytes()[:8])[0]
    weights.write_bytes(weights.read_bytes()[:header_end]
                        + b"\xff" * (weights.stat().st_size - header_end))
    result = cli("generate", "a cat", "--model", str(model), "--device", "cpu",
                 "--frames", "32", "--samples", "1000000", "-o", str(tmp_path / "o.gif"))
    assert_one_line_error(result, "needs about", "on cpu", "available", "lower the size")
    assert not (tmp_path / "o.gif").exists()
