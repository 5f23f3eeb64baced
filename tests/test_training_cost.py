"""What training costs: the step profile, the settings that make a clip cheaper without changing
the run, the cost benchmark and the one-call GPU run script (in its CPU dry mode).

Speed itself is not asserted here: benchmarks/bench_training.py measures it side by side.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from flipsketch.training.data import AnimatorClips
from flipsketch.training.loop import LoopConfig, train_denoiser
from flipsketch.training.profiling import SECTIONS

from testing import SMALL, run_loop, small_components

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # trains under torch.profiler
def test_profiled_steps_say_where_the_time_goes(tmp_path):
    run_loop(tmp_path, steps=3, profile_steps=2)
    profile = tmp_path / "profile"
    summary = json.loads((profile / "sections.json").read_text())
    assert summary["steps"] == 2 and summary["batch_size"] == SMALL["stages"]["base"]["batch_size"]
    for row in summary["per_step"]:  # every part of a step timed, the rest is "other"
        assert set(row) == {*SECTIONS, "other", "total"}
        assert row["unet_forward"] > 0 and row["backward"] > 0 and row["vae_encode"] > 0
        assert sum(row[k] for k in SECTIONS) <= row["total"] + 1e-6
    table = (profile / "sections.txt").read_text()
    assert "| unet_forward |" in table and "- backward: backward through the UNet" in table
    assert "aten::" in (profile / "ops.txt").read_text()
    with gzip.open(profile / "trace.json.gz", "rt") as fh:  # the sections are named in it
        names = {event.get("name") for event in json.load(fh)["traceEvents"]}
    assert {"unet_forward", "backward", "optimizer"} <= names


def test_the_section_timers_run_without_torch_profiler(tmp_path):
    run_loop(tmp_path, steps=3, profile_steps=2, profile_operators=False)
    summary = json.loads((tmp_path / "profile" / "sections.json").read_text())
    assert summary["steps"] == 2
    assert all(row["unet_forward"] > 0 and row["backward"] > 0 for row in summary["per_step"])
    assert sorted(p.name for p in (tmp_path / "profile").iterdir()) == \
        ["sections.json", "sections.txt"]


def test_a_shorter_run_than_profile_steps_still_writes_its_profile(tmp_path):
    run_loop(tmp_path, steps=1, profile_steps=5)
    assert json.loads((tmp_path / "profile" / "sections.json").read_text())["steps"] == 1


def test_encoding_a_few_frames_at_a_time_gives_the_same_run(tmp_path):
    # vae_chunk only splits the VAE's batch: the latents, and so the whole run, are the same.
    whole = run_loop(tmp_path / "whole", steps=2, cache_latents=False, vae_chunk=0)
    chunks = run_loop(tmp_path / "chunks", steps=2, cache_latents=False, vae_chunk=4)
    assert whole.keys() == chunks.keys()
    for name in whole:
        torch.testing.assert_close(chunks[name], whole[name], rtol=0, atol=0)


def encodes(run_dir, steps: int, seed: int = 3, resume: bool = False) -> int:
    """Train the small model on a pool of 4 clips with cached latents; returns how many times
    the VAE encoded."""
    parts = small_components()
    calls = []
    parts["vae"].encoder.register_forward_hook(lambda *_: calls.append(1))
    settings = {**{k: v for k, v in SMALL["stages"]["base"].items() if k != "clips"},
                "steps": steps, "checkpoint_every": 2}
    train_denoiser(parts, {"unet": parts["unet"], "text_encoder": parts["text_encoder"]},
                   AnimatorClips(4, num_frames=6, resolution=64, seed=seed), run_dir,
                   LoopConfig.from_dict(settings), resume=resume)
    return len(calls)


def test_a_resumed_run_reads_its_cached_latents_instead_of_encoding_again(tmp_path):
    assert encodes(tmp_path / "run", steps=2) > 0  # the first pass over the pool encodes it
    assert list((tmp_path / "run" / "latents").glob("*/rank0-step0000002.safetensors"))
    assert encodes(tmp_path / "run", steps=4, resume=True) == 0  # read back, checked, used
    # Other clips at the same indices (the data settings changed): encoded afresh.
    assert encodes(tmp_path / "run", steps=6, seed=4, resume=True) > 0


@pytest.mark.slow  # four training processes
def test_the_cost_benchmark_runs_for_a_few_steps(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_training.py"), "--config", str(config),
         "--steps", "2", "--repeats", "1", "--profile-out", str(tmp_path / "profiles")],
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("old run 1: ") and "s per clip (resumed)" in line
               for line in lines)
    ratio = [line for line in lines if line.startswith("ratio old/new: ")]
    assert len(ratio) == 1
    for kind in ("new clips", "cached clips", "resumed"):
        assert f"x on {kind}" in ratio[0]
    assert "| unet_forward |" in done.stdout
    for name in ("old", "new"):
        for part in ("profile-first", "profile-resumed"):
            assert (tmp_path / "profiles" / name / part / "sections.txt").is_file()
            # The steps were timed without torch.profiler (no --operators).
            assert not (tmp_path / "profiles" / name / part / "ops.txt").exists()


@pytest.mark.slow  # trains, evaluates and exports through four commands
def test_train_gpu_script_runs_whole_on_the_cpu(tmp_path):
    # The small config with every key the script sets (--set changes existing keys only).
    base = {**SMALL["stages"]["base"], "num_workers": 0, "vae_chunk": 0, "profile_steps": 0}
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "stages": {**SMALL["stages"], "base": base}}))
    out, run = tmp_path / "out", tmp_path / "run"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "train_gpu.sh"), "--cpu", "--steps", "3",
         "--config", str(config), str(out), "5"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={**os.environ, "RUN_DIR": str(run), "PROFILE_STEPS": "2",
             "PYTHON": sys.executable})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    # Everything the run made is in OUT: the model, the profile, the evaluations, the logs.
    assert (out / "model" / "model_index.json").is_file()
    assert json.loads((out / "profile" / "sections.json").read_text())["steps"] == 2
    assert (out / "profile" / "trace.json.gz").is_file()
    assert [json.loads(x)["step"] for x in (out / "loss.jsonl").read_text().splitlines()] == [
        1, 2, 3]
    assert json.loads((out / "captions.json").read_text())["timesteps"][0]["timestep"] == 950
    assert "accuracy" in json.loads((out / "motion.json").read_text())
    summary = (out / "summary.txt").read_text()
    assert summary.startswith("steps 3 (batch 2: 6 clips seen)")
    assert "| unet_forward |" in summary and "eval motion, text only" in summary
    # ... and nothing with optimiser state: checkpoints stay in the run folder.
    assert not list(out.rglob("optimizer.pt")) and list(run.rglob("optimizer.pt"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 64 * 2**20
