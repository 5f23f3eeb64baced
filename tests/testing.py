"""What the tests share: one module (as diffusers' testing utilities), imported by the test
modules and by conftest.py, which only declares fixtures and hooks; no test module imports from
another. Nothing here downloads anything.

- the device of the sampler tests (``TEST_DEVICE``: the CPU unless ``FLIPSKETCH_TEST_DEVICE``
  names another);
- real drawings (``shared_sketch``), animations read as a viewer reads them, tiny models built
  from the real diffusers classes (``build_tiny_components``, the authors' checkpoint layout,
  the AnimateDiff video models), a small training config and loop run;
- the command line's one-line errors, installed plugin distributions, the docs' code blocks;
- hard kills (SIGKILL at a chosen moment) and the promises a batch OUTDIR must keep after one:
  SIGKILL is what a power cut, the OOM killer or ``kill -9`` looks like to a program: no handler
  runs, no ``finally``, no cleanup. What survives is whatever was on disk at that moment, so
  every promise of resumption ("at most the job in progress is lost") has to hold for a kill at
  *any* instant. This module is shared by the short runs in ``tests/test_crash_consistency.py``
  and the long ones in ``benchmarks/crash_consistency.py``:

  * ``run_and_kill`` starts ``python -m flipsketch ...``, waits for a moment (``Moment``: the
    n-th line on stderr that starts with a prefix, then a delay) and sends SIGKILL;
    ``draw_moments`` draws such moments from a seeded generator, so a failing moment can be
    replayed.
  * ``batch_problems`` lists every way an OUTDIR breaks ``flipsketch batch``'s promises once a
    run has finished: each job reported exactly once as finished, its outputs there and equal
    to the uninterrupted reference run's (same thread count, so the same bytes:
    ``tests/test_determinism.py``), report.jsonl parsing and agreeing with the files, and
    nothing else left behind (no temporary, no part of a report, no output moved aside).

  It uses the standard library only (no pytest), so the benchmark can import it.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import flipsketch
from flipsketch.frames.examples import EXAMPLES_DIR
from flipsketch.overrides import load_yaml

if TYPE_CHECKING:
    from flipsketch.models.video import VideoModels

# Only light modules at import: conftest.py imports this module before pytest_configure runs,
# and diffusers, on import, makes torch create its compiler cache folder wherever
# TORCHINDUCTOR_CACHE_DIR points by then (the system's temporary folder, were it imported
# here). The helpers below import what they need.
TINY_CONFIG = Path(flipsketch.__file__).parent / "models" / "tiny.yaml"

ROOT = Path(__file__).resolve().parents[1]

# The device of the sampler tests (see the module docstring). On CUDA, TF32 is off: the tests
# compare against written-out fp32 arithmetic, and TF32 convolutions differ from it by ~1e-3.
TEST_DEVICE = torch.device(os.environ.get("FLIPSKETCH_TEST_DEVICE") or "cpu")
if TEST_DEVICE.type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    # Two runs must agree bit for bit (test_pipeline), backward passes through the UNet
    # included: deterministic cuDNN and cuBLAS kernels, set before CUDA starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


# -- real drawings, animations as a viewer reads them, tiny models ---------------------------------
# Real drawings by people outside the project (the FlipSketch authors' demo, MIT): the
# examples shipped inside the package (``example:NAME``), so the suite needs nothing beside
# the checkout.
SKETCHES = EXAMPLES_DIR


def shared_sketch(name: str) -> Path:
    """A real drawing shipped with the package (``src/flipsketch/examples``); its absence is a
    failure, not a skip: the package is broken without it."""
    path = SKETCHES / name
    assert path.is_file(), f"{path} is missing: the example drawings ship with the package"
    return path


def read_animation(path: Path):
    """(F, H, W, ...) frames of an animation file as a viewer shows them (not our reader)."""
    import imageio.v3 as iio
    import numpy as np
    from PIL import Image, ImageSequence

    if path.suffix == ".mp4":
        return iio.imread(path, index=None)
    with Image.open(path) as image:
        return np.stack([np.asarray(f.convert("L")) for f in ImageSequence.Iterator(image)])


def byte_level_vocab() -> dict[str, int]:
    """A CLIP-BPE vocabulary of single bytes only: real tokenizer code, tiny files."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            chars.append(256 + extra)
            extra += 1
    symbols = [chr(c) for c in chars]
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def build_tiny_components(prediction_type: str = "epsilon", vae_channels: int = 3,
                          seed: int = 0, device: torch.device | str = "cpu") -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=vae_channels, out_channels=vae_channels, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4,
        sample_size=64, scaling_factor=0.5,
    )
    unet = UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), layers_per_block=1,
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=514, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=32, bos_token_id=512, eos_token_id=513,
        pad_token_id=513,
    ))
    tokenizer = CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=32)
    scheduler = DDIMScheduler(prediction_type=prediction_type, clip_sample=False,
                              beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, set_alpha_to_one=False)
    return dict(vae=vae.to(device), text_encoder=text_encoder.to(device), tokenizer=tokenizer,
                unet=unet.to(device), scheduler=scheduler)


def save_authors_checkpoint(repo: Path, *, seed: int = 1, without: tuple[str, ...] = (),
                            marker: Path) -> Path:
    """A tiny model in the layout of the authors' ``Hmrishav/t2v_sketch-lora``, saved in
    ``repo``: ``checkpoint-2500/`` is a whole diffusers pipeline (``model_index.json``,
    ``unet/``, ``text_encoder/``, ``tokenizer/``, ``vae/``, ``scheduler/``; ``without`` leaves
    parts out, as a fine-tune that never had them) and ``checkpoint-2500/lora/`` holds their
    text-encoder LoRA as a pickle. Here
    unpickling that file creates ``marker``, so a test can tell that nothing read it.
    ``seed`` makes its weights differ from ``tiny_model_dir``'s (seed 0), the base's stand-in.
    """
    import json
    import pickle
    import shutil

    from flipsketch.sampler.pipeline import FlipSketchPipeline

    folder = repo / "checkpoint-2500"
    FlipSketchPipeline(**build_tiny_components(seed=seed)).save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = "TextToVideoSDPipeline"  # what the authors' training script saved
    for part in without:
        shutil.rmtree(folder / part)
        del index[part]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    (folder / "lora").mkdir()
    (folder / "lora" / "pytorch_lora_weights.bin").write_bytes(pickle.dumps(_Tripwire(marker)))
    return folder


class _Tripwire:
    """Pickled as a call of ``Path.touch(marker)``: whatever unpickles it leaves the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):
        return Path.touch, (self.marker,)



# -- the command line ------------------------------------------------------------------------------
def assert_one_line_error(result, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]



# -- the sampler -----------------------------------------------------------------------------------
def a_sketch(size: int = 64) -> torch.Tensor:
    sketch = torch.ones(size, size)
    sketch[20:44, 30:33] = 0  # a vertical stroke
    sketch[12:14, 10:54] = 0  # a horizontal one
    return sketch


def clips_of_call(unet, sample: torch.Tensor) -> list[torch.Tensor]:
    """The clips a UNet call computes, (b, c, f, h, w) each: ``sample`` itself, or for a step
    whose reference and joint passes share one call (``clips.predict_clips``: its frames come
    in as one-frame clips) each pass's clips."""
    from flipsketch.sampler.clips import layout_in_progress

    layout = layout_in_progress(unet)
    if layout is None:
        return [sample]
    frames = sample[:, :, 0]  # (all frames, c, h, w)
    return [frames[layout.rows(g)].unflatten(0, (b, f)).transpose(1, 2)
            for g, (b, f) in enumerate(layout.shapes)]


def record_unet_calls(pipe) -> tuple[list, object]:
    """(batch, frames) of every UNet call from now on, a tuple of them for a call that computes
    several passes at once, and the hook's handle."""
    calls: list = []

    def record(module, args) -> None:
        shapes = [(x.shape[0], x.shape[2]) for x in clips_of_call(module, args[0])]
        calls.append(shapes[0] if len(shapes) == 1 else tuple(shapes))

    return calls, pipe.unet.register_forward_pre_hook(record)


def denoise_inverted(pipe, sketch, steps: int, start=None) -> float:
    """Relative error of null-prompt DDIM denoising started from the inverted latent."""
    from flipsketch.sampler.inversion import ddim_invert

    latent = pipe.encode_sketch(sketch)
    null = pipe.encode_prompt([""])
    pipe.scheduler.set_timesteps(steps)
    timesteps = pipe.scheduler.timesteps
    x = ddim_invert(pipe, latent, null, timesteps)
    if start is not None:
        x = start(x.shape, generator=torch.Generator().manual_seed(0)).to(x.device)
    with torch.no_grad():
        for t in timesteps:
            x = pipe.scheduler.step(pipe.predict(x, t, null), t, x).prev_sample
    return ((x - latent).norm() / latent.norm()).item()



# -- training: a small model config and a loop run on it -------------------------------------------
SMALL = {
    "seed": 0,
    "mixed_precision": "no",
    "model": {
        "resolution": 64,
        "num_frames": 6,
        "vae": {"block_out_channels": [8, 16, 16, 16], "layers_per_block": 1,
                "latent_channels": 4, "norm_num_groups": 8},
        "unet": {"block_out_channels": [16, 32, 32],
                 "down_block_types": ["DownBlock3D", "CrossAttnDownBlock3D",
                                      "CrossAttnDownBlock3D"],
                 "up_block_types": ["CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"],
                 "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 2},
        "text_encoder": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2},
        "scheduler": load_yaml(TINY_CONFIG.read_text())["model"]["scheduler"],
    },
    "stages": {
        "vae": {"steps": 3, "batch_size": 2, "crop": 32, "lr": 1e-3, "kl_weight": 1e-6,
                "stroke_weight": 4.0, "stats_frames": 12},
        "base": {"clips": 6, "steps": 4, "batch_size": 2, "lr": 1e-3, "warmup_steps": 1,
                 "caption_dropout": 0.1, "snr_gamma": 5.0, "ema_decay": 0.99,
                 "cache_latents": True, "checkpoint_every": 2, "keep_checkpoints": 2,
                 "log_every": 1, "export_every": 4},
    },
}


def small_components() -> dict:
    from flipsketch.models.tiny import build_components

    torch.manual_seed(0)
    parts = build_components(SMALL)
    parts["vae"].register_to_config(latents_mean=[0.1, -0.2, 0.0, 0.3],
                                    latents_std=[0.5, 0.4, 0.6, 0.5])
    return parts


def run_loop(run_dir, steps: int, resume: bool = False, **overrides) -> dict:
    """A fresh (seeded) model trained by the loop; returns the final checkpoint's weights."""
    from safetensors.torch import load_file

    from flipsketch.training.checkpoints import checkpoints
    from flipsketch.training.data import AnimatorClips
    from flipsketch.training.loop import LoopConfig, train_denoiser

    parts = small_components()
    models = {"unet": parts["unet"], "text_encoder": parts["text_encoder"]}
    settings = {**SMALL["stages"]["base"], "steps": steps, **overrides}
    settings.pop("clips")
    dataset = AnimatorClips(4, num_frames=6, resolution=64, seed=3)
    train_denoiser(parts, models, dataset, run_dir, LoopConfig.from_dict(settings),
                   resume=resume)
    return load_file(checkpoints(run_dir)[-1] / "trainable.safetensors")



# -- plugins: a real installed distribution --------------------------------------------------------
def make_distribution(site: Path, name: str, module_source: str) -> None:
    """A real installed distribution on a path: dist-info with a flipsketch entry point."""
    dist = site / f"{name}-0.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(f"[flipsketch]\n{name} = {name}_plugin\n")
    (site / f"{name}_plugin.py").write_text(module_source)



# -- code blocks of the README and docs/ -----------------------------------------------------------
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<lang>[\w+-]*)\s*$")


NOT_TESTED = re.compile(r"<!--\s*not-tested:\s*(?P<reason>.*?)\s*-->", re.DOTALL)


@dataclass
class Block:
    file: str  # relative to the repository
    line: int  # of the opening fence
    lang: str
    code: str
    not_tested: str | None  # the reason given in the markdown, None: it runs

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def code_blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The fenced blocks of a markdown file, each with the not-tested reason right above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, indent, fence = i, match["indent"], match["fence"]
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path}:{start + 1}: code block never closed")
        i += 1
        # The not-tested comment: the last thing before the fence, blank lines aside.
        above = "\n".join(lines[:start]).rstrip()
        marker = NOT_TESTED.search(above[above.rfind("<!--"):]) if above.endswith("-->") else None
        blocks.append(Block(str(path.relative_to(root)), start + 1, match["lang"],
                            "\n".join(body) + "\n",
                            " ".join(marker["reason"].split()) if marker else None))
    return blocks


def commands(script: str) -> list[list[str]]:
    """A bash block's commands as argument lists: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", script)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def run_python(block: Block, module_name: str = "doc_example") -> types.ModuleType:
    module = types.ModuleType(module_name)
    exec(compile(block.code, block.id, "exec"), module.__dict__)
    return module



# -- the AnimateDiff + ControlNet video models, tiny -----------------------------------------------
def save_tiny_video_models(folder: Path) -> VideoModels:
    """SD-1.5-shaped base, motion adapter and scribble-style ControlNet with tiny random
    weights, saved as safetensors in three folders."""
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        MotionAdapter,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from flipsketch.models.video import VideoModels

    torch.manual_seed(0)
    blocks = (8, 8)
    unet = UNet2DConditionModel(
        block_out_channels=blocks, layers_per_block=1, sample_size=8, in_channels=4,
        out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
        norm_num_groups=2, attention_head_dim=2,
    )
    controlnet = ControlNetModel(
        block_out_channels=blocks, layers_per_block=1, in_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=8,
        conditioning_embedding_out_channels=(8, 8), norm_num_groups=2, attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=blocks, in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=2, layers_per_block=1,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=514, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=32, bos_token_id=512, eos_token_id=513,
        pad_token_id=513,
    ))
    tokenizer = CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=32)
    adapter = MotionAdapter(block_out_channels=blocks, motion_layers_per_block=1,
                            motion_norm_num_groups=2, motion_num_attention_heads=2,
                            motion_max_seq_length=32)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, steps_offset=1)
    # ControlNet's output convolutions and the motion modules' output projections start at
    # zero (so training starts from the base model); random ones make both parts matter here.
    for module in (controlnet, adapter):
        for weight in module.parameters():
            if weight.ndim > 1 and not weight.any():
                torch.nn.init.normal_(weight, std=0.2)
    StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(folder / "base")
    adapter.save_pretrained(folder / "motion_adapter")
    controlnet.save_pretrained(folder / "controlnet")
    return VideoModels(str(folder / "base"), str(folder / "motion_adapter"),
                       str(folder / "controlnet"))



# -- hard kills ------------------------------------------------------------------------------------
REPORT = "report.jsonl"  # flipsketch.batch.REPORT, kept literal: the file is the contract


@dataclass(frozen=True)
class Moment:
    """When to kill: ``delay_s`` after the ``count``-th stderr line starting with ``after``
    (``count`` 0: after the start of the process)."""

    after: str = ""
    count: int = 0
    delay_s: float = 0.0

    def __str__(self) -> str:
        anchor = f"line {self.count} '{self.after}...'" if self.count else "start"
        return f"{self.delay_s:.3f} s after {anchor}"


@dataclass
class Killed:
    """What a run that was meant to be killed did."""

    moment: Moment
    killed: bool  # False: it finished (or failed) before the moment came
    returncode: int
    stderr: str
    seconds: float


def environment(**env: str) -> dict[str, str]:
    """The child's environment: offline, OpenMP not spinning, this process's thread count
    (so that every run computes alike and outputs compare byte for byte), unbuffered stderr
    (the moments are read from it), no line wrapping."""
    import torch

    threads = str(torch.get_num_threads())
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1",
            "COLUMNS": "1000", **env}


def flipsketch_command(*args: str | os.PathLike) -> list[str]:
    return [sys.executable, "-m", "flipsketch", *map(os.fspath, args)]


def run_to_end(command: list[str], *, cwd: Path, env: dict[str, str],
               timeout_s: float = 600) -> subprocess.CompletedProcess:
    """A run that is not interrupted."""
    return subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout_s)


def run_and_kill(command: list[str], moment: Moment, *, cwd: Path, env: dict[str, str],
                 timeout_s: float = 600) -> Killed:
    """Start ``command``, SIGKILL it at ``moment``; a run that ends first is reported as not
    killed (``killed`` False), which is a moment wasted, not a failure."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:  # drained by a thread: a full pipe must never block the process
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    reached = moment.count == 0
    deadline = started + timeout_s
    ended = False
    while not reached and not ended:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            raise TimeoutError(f"{moment} never came in {timeout_s} s:\n{''.join(seen)}") from None
        if line is None:
            ended = True
            break
        seen.append(line)
        reached = sum(s.startswith(moment.after) for s in seen) >= moment.count
    killed = False
    if not ended:
        try:
            process.wait(timeout=moment.delay_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            killed = True
    process.wait(timeout=timeout_s)
    reader.join(timeout=timeout_s)
    while (line := lines.get_nowait() if not lines.empty() else None) is not None:
        seen.append(line)
    return Killed(moment, killed, process.returncode, "".join(seen),
                  time.monotonic() - started)


def draw_moments(rng: random.Random, count: int, *, anchor: str, anchors: int,
                 before_first_s: float, between_s: float) -> list[Moment]:
    """``count`` moments spread over a run that prints ``anchors`` lines starting with
    ``anchor`` (one per finished job): before the first (from the start of the process,
    uniform over ``before_first_s``) or after the n-th (uniform over ``between_s``, the time
    one job takes), each equally likely."""
    moments = []
    for _ in range(count):
        n = rng.randrange(anchors + 1)
        span = before_first_s if n == 0 else between_s
        moments.append(Moment(anchor if n else "", n, round(rng.uniform(0, span), 3)))
    return moments


# -- batch -----------------------------------------------------------------------------------------
def temporaries(folder: Path) -> list[Path]:
    """What a write in progress leaves: ``atomic_path``'s ``.NAME.XXXX.tmp.SUFFIX``, an
    output moved aside while its replacement goes in (``.NAME.XXXX.old``), a staging folder
    (``.staging-*``)."""
    return sorted(p for p in folder.rglob(".*")
                  if ".tmp" in p.name or p.name.endswith(".old")
                  or p.name.startswith(".staging-"))


def every_file(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, relative, POSIX."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def batch_problems(outdir: Path, reference: Path) -> list[str]:
    """Why ``outdir``, after a batch that finished, is not what the uninterrupted batch in
    ``reference`` left; empty when it is.

    Checked: report.jsonl parses, one line per job of the reference, in job order; every job
    finished (done or skipped) with the reference's fingerprint and outputs; every output
    there, byte for byte the reference's; nothing else in OUTDIR (no temporaries, no report
    parts, no leftover state folder, no output twice under another name).
    """
    problems = []
    try:
        lines = (outdir / REPORT).read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]
    except (OSError, ValueError) as exc:
        return [f"{REPORT} unreadable: {exc}"]
    expected = [json.loads(line) for line in (reference / REPORT).read_text().splitlines()]
    if [r.get("job") for r in records] != [r["job"] for r in expected]:
        problems.append(f"jobs reported {[r.get('job') for r in records]}, expected "
                        f"{[r['job'] for r in expected]}, each once")
    for record, wanted in zip(records, expected, strict=False):
        job = f"job {wanted['job']} ({wanted['output']})"
        if record.get("status") not in ("done", "skipped"):
            problems.append(f"{job}: status {record.get('status')!r}: {record.get('error')}")
        for key in ("output", "fingerprint", "outputs"):
            if record.get(key) != wanted[key]:
                problems.append(f"{job}: {key} {record.get(key)!r}, expected {wanted[key]!r}")
        for name in wanted["outputs"]:
            path, good = outdir / name, reference / name
            if not path.is_file():
                problems.append(f"{job}: output {name} missing")
            elif path.read_bytes() != good.read_bytes():
                problems.append(f"{job}: output {name} differs from the uninterrupted run's "
                                f"({path.stat().st_size} bytes, expected {good.stat().st_size})")
    left = every_file(outdir) - every_file(reference)
    if left:
        problems.append(f"left behind: {sorted(left)}")
    missing = every_file(reference) - every_file(outdir)
    if missing:
        problems.append(f"missing: {sorted(missing)}")
    return problems


@dataclass
class Trial:
    """One kill of a batch and what the run after it left: ``problems`` empty when OUTDIR is
    the uninterrupted run's."""

    moment: Moment
    killed: bool  # False: the run ended before its moment
    problems: list[str]


def kill_batch_trials(command, work: Path, env: dict[str, str], count: int,
                      seed: int) -> Iterator[Trial]:
    """Run ``command(OUTDIR)`` (a ``flipsketch batch``) once to its end as the reference, then
    ``count`` times: SIGKILL it at a seeded moment while a job is in progress (before the
    first job ends or after the n-th, n < the job count, timed from the reference), run it
    again, and compare. Shared by tests/test_crash_consistency.py and
    benchmarks/crash_consistency.py."""
    reference = work / "reference"
    started = time.monotonic()
    done = run_to_end(command(reference), cwd=work, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the uninterrupted batch failed: {done.stderr}")
    seconds = [json.loads(line)["seconds"] for line in (reference / REPORT).open()]
    startup_s = time.monotonic() - started - sum(seconds)
    moments = draw_moments(random.Random(seed), count, anchor="done ",
                           anchors=len(seconds) - 1, before_first_s=startup_s + seconds[0],
                           between_s=min(seconds))
    for k, moment in enumerate(moments):
        outdir = work / f"killed-{k}"
        killed = run_and_kill(command(outdir), moment, cwd=work, env=env)
        again = run_to_end(command(outdir), cwd=work, env=env)
        problems = batch_problems(outdir, reference)
        if again.returncode != 0:
            problems.insert(0, f"the run after the kill failed: {again.stderr.strip()}")
        yield Trial(moment, killed.killed, problems)
