"""scripts/gpu_check.sh and the benchmark it runs, tested where there is no GPU.

A machine with a GPU is lent rarely and briefly, so whatever can break there for a reason other
than the GPU is found here first: the script runs end to end on the CPU (``--cpu``: the same
steps with a tiny random-weight model), and ``--arch modelscope-full`` is built on the meta
device (no memory) and checked against ModelScope T2V 1.7B's real configuration and size.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testing import shared_sketch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def load_bench():
    """benchmarks/bench_sampler.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_sampler",
                                                  ROOT / "benchmarks" / "bench_sampler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, **env}, check=False,
                          timeout=1800)


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_modelscope_full_is_the_real_architecture_at_its_real_size():
    from diffusers import UNet3DConditionModel

    bench = load_bench()
    arch = bench.ARCHS["modelscope-full"]
    # diffusers' defaults for UNet3DConditionModel are ModelScope's config, but sample_size.
    defaults = {name: p.default for name, p in
                inspect.signature(UNet3DConditionModel.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert {k: v for k, v in arch.unet.items() if k != "sample_size"} == \
        {k: defaults[k] for k in arch.unet if k != "sample_size"}
    assert arch.unet["sample_size"] == 32 and arch.dtype == "bf16"

    parts = bench.random_components(arch, "meta")
    assert all(p.is_meta for name in ("unet", "vae", "text_encoder")
               for p in parts[name].parameters())
    unet, text_encoder, vae = (parameters(parts[name]) for name in ("unet", "text_encoder", "vae"))
    assert 1.40e9 < unet < 1.42e9  # 1,411,233,860
    assert 0.335e9 < text_encoder < 0.345e9  # 340 M: the 1.36 GB fp32 text_encoder file
    assert 83.0e6 < vae < 84.0e6  # Stable Diffusion's VAE: 83,653,863
    assert 1.7e9 < unet + text_encoder < 1.8e9  # "1.7B"
    config = parts["text_encoder"].config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size) == (23, 1024, 16, 4096)
    # 256 x 256 out of 32 x 32 latents; the shipped tokenizer fits the text encoder.
    assert unet_resolution(parts) == 256
    tokenizer = parts["tokenizer"]
    assert len(tokenizer) <= config.vocab_size
    assert tokenizer.model_max_length == config.max_position_embeddings == 77


def unet_resolution(parts: dict) -> int:
    return parts["unet"].config.sample_size * 2 ** (len(parts["vae"].config.block_out_channels) - 1)


def test_without_a_gpu_the_check_stops_with_one_line(tmp_path):
    result = run_check(str(tmp_path / "out"), CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "no CUDA GPU" in result.stderr and "--cpu" in result.stderr
    assert not (tmp_path / "out").exists()
    bad = run_check("--bogus")
    assert bad.returncode == 2 and "unknown option '--bogus'" in bad.stderr


@pytest.mark.slow  # a real run of the script: pytest, 10 flipsketch commands, 3 benchmarks
def test_the_cpu_smoke_run_tests_the_sampler_runs_the_main_job_and_prints_the_ratios(tmp_path):
    # Two sampler tests stand for the lot (all of them take ~30 s on 2 busy cores).
    tests = ("tests/test_pipeline.py::test_text_only_mode_is_plain_guided_sampling "
             "tests/test_attention.py::"
             "test_composition_acts_on_the_conditional_branch_only_end_to_end")
    result = run_check("--cpu", str(tmp_path / "out"), GPU_CHECK_TESTS=tests,
                       GPU_CHECK_SKETCH=str(shared_sketch("fish.png")),
                       GPU_CHECK_MODELS=str(tmp_path / "models"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # The main job end to end, a process per command, on the random-weight architecture
    # (saved as a model folder); the shipped tiny model only on a GPU.
    e2e = tmp_path / "out" / "e2e"
    assert (tmp_path / "models" / "random-tiny" / "model_index.json").is_file()
    assert not (e2e / "tiny").exists()
    label = "random-tiny"
    for name in ("cache-1", "cache-2", "paper", "best-of-3", "batch"):
        assert f"-- {name}: flipsketch" in output
    first, again, paper, best = (
        json.loads((e2e / label / f"{name}.json").read_text())
        for name in ("cache-1", "cache-2", "paper", "best-of-3"))
    assert (first["inversion_cached"], again["inversion_cached"]) == (False, True)
    assert first["model"] == str(tmp_path / "models" / label)
    assert Path(paper["outputs"][0]).is_file()
    assert len(best["ranking"]["samples"]) == 3 and len(best["outputs"]) == 1
    batch = json.loads((e2e / label / "batch.json").read_text())
    assert (batch["done"], batch["failed"]) == (2, 0)
    summary = (e2e / "summary.txt").read_text()
    assert "end to end: passed" in summary and "random-tiny best-of-3 scores" in summary
    assert "end-to-end commands on cpu: passed" in output
    assert "flipsketch test device: cpu" in output  # the tests ran on the chosen device
    assert "2 passed" in output and "sampler tests on cpu: passed" in output
    for words in ("text only (plain)", "composition only", "full method", "compose ratio",
                  "full ratio", "memory ratio", "one call a step"):
        assert words in output
    summary = json.loads((tmp_path / "out" / "bench_sampler.json").read_text())
    assert summary["model"] == "tiny" and summary["device"] == "cpu"
    assert summary["steps"] == 3 and summary["frames"] == 4 and summary["all_finite"]
    for key in ("plain_s", "compose_s", "full_s", "full_one_call_s", "compose_ratio",
                "full_ratio", "one_call_ratio"):
        assert summary[key] > 0
    assert summary["full_ratio"] == pytest.approx(summary["full_s"] / summary["plain_s"],
                                                  rel=1e-2)
    assert summary["one_call_ratio"] == pytest.approx(
        summary["full_one_call_s"] / summary["full_s"], rel=1e-2)
    if summary["memory"] != "n/a":  # Linux: peak resident size
        assert summary["full_mem_ratio"] > 0 and summary["plain_peak_mib"] > 0
    assert "gpu_check: done" in (tmp_path / "out" / "gpu_check.log").read_text()
