"""Fixtures and hooks only; what tests share besides fixtures is in ``testing.py``.

Tiny random-weight models built from the real diffusers classes:
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The suite runs on 2 cores shared with other work (a training run, say). OpenMP's default
# waiting policy spins: a thread waiting for a descheduled sibling burns its core, and on a
# busy machine a torch op then takes up to ~75x longer (3 steps of the tiny model: 127 s
# instead of 1.8 s). Set before torch loads its OpenMP runtime; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (after OMP_WAIT_POLICY)

from testing import TEST_DEVICE, build_tiny_components  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2`: a worker per core, a thread each
    torch.set_num_threads(1)


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (the order is otherwise kept): with ``-n 2`` a 100 s test that
    starts last leaves one core idle until it ends; started first, the short tests fill in
    around it. (Every xdist worker sorts its collection alike, as xdist requires.)"""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_report_header(config) -> str:
    return f"flipsketch test device: {TEST_DEVICE}"


@pytest.fixture
def device() -> torch.device:
    """Where the sampler tests run: ``FLIPSKETCH_TEST_DEVICE``, the CPU by default."""
    return TEST_DEVICE


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


