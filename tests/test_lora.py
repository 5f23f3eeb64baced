"""`flipsketch train lora`: it learns, writes a small adapter that `--lora` loads, resumes
exactly, runs across processes, and rejects bad data and foreign base models in one line.

Everything runs on the tiny random model of conftest (64 px, epsilon prediction) and small
synthetic datasets written by ``synth.write_dataset``, on the CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from flipsketch.api import SamplerSettings, animate, load_pipeline
from flipsketch.errors import UsageError
from flipsketch.training.lora import LoraSettings, train_lora
from flipsketch.training.synth import write_dataset

from testing import build_tiny_components, shared_sketch

FRAMES = 4


def settings(model_dir: Path, **overrides) -> LoraSettings:
    values = dict(model=str(model_dir), num_frames=FRAMES, batch_size=2, lr=1e-2,
                  caption_dropout=0.0, save_every=2)
    return LoraSettings(**{**values, **overrides})


def losses(adapter: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (adapter / "checkpoints/loss.jsonl").open()]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "clips", num_clips=4, seed=0,
                         size=64, num_frames=6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, clips) -> Path:
    """One 20-step run, shared by the tests that only read its results."""
    out = tmp_path_factory.mktemp("lora") / "adapter"
    train_lora(clips, out, settings(tiny_model_dir, steps=20, lr=2e-2, save_every=20))
    return out


def test_training_lowers_the_loss(trained):
    curve = losses(trained)  # one entry per 10 steps: the mean loss of that window
    assert len(curve) == 2
    assert curve[-1] < 0.9 * curve[0], curve


def test_adapter_is_rank_sized_and_described(trained, tiny_model_dir, clips):
    # What a rank-4 LoRA on these projections must hold, counted on the base model itself.
    unet = build_tiny_components()["unet"]
    targets = [m for name, m in unet.named_modules()
               if name.endswith((".to_q", ".to_k", ".to_v", ".to_out.0"))]
    assert targets and all(isinstance(m, torch.nn.Linear) for m in targets)
    params = sum(4 * (m.in_features + m.out_features) for m in targets)
    weights = load_file(trained / "adapter_model.safetensors")
    assert len(weights) == 2 * len(targets)
    assert sum(w.numel() for w in weights.values()) == params
    size = (trained / "adapter_model.safetensors").stat().st_size
    assert 4 * params < size < 4 * params + 200 * len(weights)  # fp32 values + the header
    unet_size = (tiny_model_dir / "unet/diffusion_pytorch_model.safetensors").stat().st_size
    assert size < unet_size / 5

    config = json.loads((trained / "adapter_config.json").read_text())
    assert config["r"] == 4
    assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    card = (trained / "README.md").read_text()
    assert str(tiny_model_dir.resolve()) in card and str(clips.resolve()) in card
    assert "4 clips" in card and "| rank | 4 |" in card and "| steps | 20 of 20 |" in card
    assert f"{losses(trained)[-1]:.4f}" in card


def sample(pipe) -> torch.Tensor:
    settings = SamplerSettings(num_frames=3, num_inference_steps=3, align=False)
    return torch.from_numpy(animate(pipe, "a fish swimming", None, settings)[0].frames)


def test_adapter_loads_and_changes_the_output_and_scale_zero_is_the_base(trained,
                                                                         tiny_model_dir):
    base = sample(load_pipeline(str(tiny_model_dir)))
    with_lora = sample(load_pipeline(str(tiny_model_dir), loras=[str(trained)]))
    scaled_off = sample(load_pipeline(str(tiny_model_dir), loras=[f"{trained}:0"]))
    assert (base - with_lora).abs().max() > 1e-3
    torch.testing.assert_close(base, scaled_off)


def test_resume_gives_the_same_adapter_as_an_uninterrupted_run(tmp_path, tiny_model_dir,
                                                              clips):
    # Caption dropout on, so the restored Python RNG matters too.
    run = settings(tiny_model_dir, steps=4, caption_dropout=0.5)
    train_lora(clips, tmp_path / "straight", run)
    train_lora(clips, tmp_path / "stopped", settings(tiny_model_dir, steps=2,
                                                     caption_dropout=0.5))
    assert [p.name for p in (tmp_path / "stopped/checkpoints").glob("checkpoint-*")] == [
        "checkpoint-0000002"]
    with pytest.raises(UsageError, match="--rank 4"):
        train_lora(clips, tmp_path / "stopped", settings(tiny_model_dir, steps=4, rank=2,
                                                         caption_dropout=0.5), resume=True)
    train_lora(clips, tmp_path / "stopped", run, resume=True)

    straight = load_file(tmp_path / "straight/adapter_model.safetensors")
    resumed = load_file(tmp_path / "stopped/adapter_model.safetensors")
    assert straight.keys() == resumed.keys()
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
    assert any(v.abs().max() > 0 for k, v in straight.items() if "lora_B" in k)  # it trained
    # Both halves of the stopped run logged the mean of 2 steps, the straight run of all 4.
    assert np.mean(losses(tmp_path / "stopped")) == pytest.approx(losses(tmp_path / "straight")[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # three real processes: the launcher and two workers, each importing torch
def test_two_processes_on_cpu_through_accelerate_launch(tmp_path, tiny_model_dir, clips):
    # `accelerate launch --cpu` starts a single process unless MPI is set up; the torchrun
    # launcher (--multi_gpu) with ACCELERATE_USE_CPU gives two gloo processes on any machine.
    out = tmp_path / "adapter"
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
         "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(free_port()),
         "-m", "flipsketch", "train", "lora", str(clips), "-o", str(out),
         "--model", str(tiny_model_dir), "--steps", "2", "--frames", str(FRAMES),
         "--save-every", "2", "--json"],
        capture_output=True, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["step"] == 2  # one summary: only the main process prints
    checkpoint = out / "checkpoints/checkpoint-0000002"
    assert sorted(p.name for p in checkpoint.glob("rng_*.pt")) == ["rng_0.pt", "rng_1.pt"]
    assert load_pipeline(str(tiny_model_dir), loras=[str(out)])


def bad_data(root: Path, case: str) -> Path:
    """A dataset with one problem; returns the file the error must name."""
    write_dataset(root, num_clips=2, seed=1, size=64, num_frames=FRAMES)
    if case == "empty folder":
        for path in root.iterdir():
            path.unlink()
        return root
    if case == "unreadable clip":
        (root / "clip_00001.gif").write_bytes(b"GIF89a not really")
        return root / "clip_00001.gif"
    if case == "too few frames":
        Image.new("L", (64, 64), 255).save(root / "clip_00001.gif")
        return root / "clip_00001.gif"
    # missing caption: a third clip that captions.jsonl does not list
    Image.new("L", (64, 64), 255).save(root / "extra.gif", save_all=True,
                                       append_images=[Image.new("L", (64, 64), 0)])
    return root / "extra.gif"


@pytest.mark.parametrize("case", ["empty folder", "unreadable clip", "too few frames",
                                  "missing caption"])
def test_bad_data_is_one_line_naming_the_file_and_writes_nothing(tmp_path, tiny_model_dir,
                                                                case, cli):
    named = bad_data(tmp_path / "data", case)
    out = tmp_path / "adapter"
    done = cli("train", "lora", tmp_path / "data", "-o", out, "--model", tiny_model_dir,
               "--steps", "2", "--frames", str(FRAMES))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(named) in done.stderr
    assert not out.exists()


def test_a_used_folder_needs_force_or_resume_and_force_starts_over(tmp_path, tiny_model_dir,
                                                                    clips):
    out = tmp_path / "adapter"
    train_lora(clips, out, settings(tiny_model_dir, steps=4))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="--resume .* --force"):
        train_lora(clips, out, settings(tiny_model_dir, steps=4))
    with pytest.raises(UsageError, match="not both"):
        train_lora(clips, out, settings(tiny_model_dir, steps=4), resume=True, force=True)
    assert len(losses(out)) == 1

    train_lora(clips, out, settings(tiny_model_dir, steps=2, seed=1), force=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == ["checkpoint-0000002"]
    assert len(losses(out)) == 1 and "| steps | 2 of 2 |" in (out / "README.md").read_text()


def test_a_lora_for_another_base_is_a_clear_error_in_animate(tmp_path, trained, cli):
    from diffusers import UNet3DConditionModel

    from flipsketch.sampler.pipeline import FlipSketchPipeline

    components = build_tiny_components()
    components["unet"] = UNet3DConditionModel.from_config(
        {**components["unet"].config, "block_out_channels": (32, 64)})
    wide = tmp_path / "wide-model"
    FlipSketchPipeline(**components).save_pretrained(wide)
    out = tmp_path / "fish.gif"
    done = cli("animate", shared_sketch("fish.png"), "a fish swimming", "--model", wide,
               "--lora", trained, "-o", out, "--frames", "3", "--steps", "2")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    config = json.loads((trained / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] in done.stderr  # names the base it was made for
    assert "--model" in done.stderr
    assert not out.exists()
