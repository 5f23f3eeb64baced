"""Shared fixtures: tiny random-weight models built from the real diffusers classes.

``tiny_components`` is ModelScope-shaped (3-channel VAE scaled by ``scaling_factor``,
epsilon prediction); ``tiny_model_dir`` is the same saved as a diffusers folder, so tests go
through the real loading code. Nothing is downloaded.

``cli`` runs ``flipsketch ARGS`` in the test's own process through ``flipsketch.cli.main``, the
console entry point itself, so a command's exit code, stdout and stderr are the user's without
a new interpreter (and its imports) per call; tests start a real process only where one
matters (signals, the installed script, ``accelerate launch``).

``device`` is where ``tiny_components`` (and so ``tiny_pipe``) live: the CPU, unless
``FLIPSKETCH_TEST_DEVICE`` names another (``cuda``). The sampler tests (``test_pipeline.py``,
``test_attention.py``) build every tensor on it, so ``scripts/gpu_check.sh`` runs them on a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from flipsketch.frames.examples import EXAMPLES_DIR

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The suite runs on 2 cores shared with other work (a training run, say). OpenMP's default
# waiting policy spins: a thread waiting for a descheduled sibling burns its core, and on a
# busy machine a torch op then takes up to ~75x longer (3 steps of the tiny model: 127 s
# instead of 1.8 s). Set before torch loads its OpenMP runtime; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (after OMP_WAIT_POLICY)

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2`: a worker per core, a thread each
    torch.set_num_threads(1)

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


@pytest.hookimpl(trylast=True)  # after pytest's tmpdir plugin has made its factory
def pytest_configure(config) -> None:
    if TEST_DEVICE.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("FLIPSKETCH_TEST_DEVICE=cuda but torch sees no CUDA device")
    # Hypothesis' home folder goes into pytest's temporary folder, of which pytest keeps the
    # last few runs and removes older ones: even without an example database Hypothesis
    # keeps caches there (Unicode tables, and constants read from the source while tests are
    # collected, so a fixture would be too late); by default it is ./.hypothesis. Each xdist
    # worker has its own temporary folder, so its own home. (``_tmp_path_factory`` is how
    # plugins reach ``tmp_path_factory`` outside a fixture; pytest-xdist does the same.)
    from hypothesis.configuration import set_hypothesis_home_dir

    temporary = config._tmp_path_factory
    set_hypothesis_home_dir(temporary.mktemp("hypothesis"))
    # Importing diffusers makes torch create its compiler cache folder, by default
    # torchinductor_USER in the system's temporary folder; here it goes into pytest's too
    # (read when first used, after this; processes the tests start inherit it).
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(temporary.mktemp("torchinductor")))


def pytest_report_header(config) -> str:
    return f"flipsketch test device: {TEST_DEVICE}"


@pytest.fixture
def device() -> torch.device:
    """Where the sampler tests run: ``FLIPSKETCH_TEST_DEVICE``, the CPU by default."""
    return TEST_DEVICE


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


@pytest.fixture(autouse=True)
def private_user_dirs(tmp_path_factory, monkeypatch):
    """Every test gets its own settings and cache folders and no FLIPSKETCH_MODEL: the suite
    never reads or writes the user's own, and no test sees another's cache."""
    base = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("FLIPSKETCH_CONFIG_DIR", str(base / "config"))
    monkeypatch.setenv("FLIPSKETCH_CACHE", str(base / "cache"))
    monkeypatch.delenv("FLIPSKETCH_MODEL", raising=False)
    return base


@dataclass
class CliResult:
    """What a user sees of one command: the same fields as ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch) -> Callable[..., CliResult]:
    """``cli(*args, cwd=None)`` runs ``flipsketch ARGS`` in this process through
    ``flipsketch.cli.main``: its error handling, exit codes and both output streams included."""
    from flipsketch.cli import main

    def run(*args: str | os.PathLike, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()  # what the test printed before is not the command's
        try:
            main([os.fspath(arg) for arg in args])
        except SystemExit as exc:
            code, message = exc.code, ""
            if not isinstance(code, int):  # sys.exit(None) is 0; sys.exit("why") prints, is 1
                code, message = (0, "") if code is None else (1, f"{code}\n")
        else:
            pytest.fail("flipsketch.cli.main returned instead of exiting")
        out, err = capsys.readouterr()
        return CliResult(code, out, err + message)

    return run


@pytest.fixture
def fresh_plugins(monkeypatch) -> Callable[[], None]:
    """``fresh_plugins()`` drops the process-wide plugin manager (``get_manager``'s cache), so
    the next command loads plugins again from the import path and ``FLIPSKETCH_LOAD_PLUGINS``
    as a new process would; the cached one is put back after the test."""
    from flipsketch.plugins import manager

    def reset() -> None:
        monkeypatch.setattr(manager, "_manager", None)

    reset()
    return reset


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


@pytest.fixture
def tiny_components(device) -> dict:
    return build_tiny_components(device=device)


@pytest.fixture
def tiny_pipe(tiny_components):
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    return FlipSketchPipeline(**tiny_components)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A diffusers-layout folder with tiny random weights (safetensors)."""
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    folder = tmp_path_factory.mktemp("models") / "tiny-random"
    FlipSketchPipeline(**build_tiny_components()).save_pretrained(folder)
    return folder


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
