"""The training loop: it learns, it resumes exactly, and the CLI runs and exports it.

Everything runs real diffusers/transformers modules in a tiny configuration on synthetic clips
of 64 px and 6 frames, on the CPU.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml
from diffusers import AutoencoderKL, UNet3DConditionModel
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTokenizer

from flipsketch.errors import UsageError
from flipsketch.models.tiny import CONFIG_PATH, load_config
from flipsketch.training.base import train_base
from flipsketch.training.checkpoints import checkpoints
from flipsketch.training.data import AnimatorClips
from flipsketch.training.loop import LoopConfig, loss_weights, sample_timesteps, train_denoiser

from testing import SMALL, run_loop, small_components


def losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "loss.jsonl").open()]


@pytest.mark.slow  # a training curve
def test_loop_lowers_the_loss_on_a_fixed_batch(tmp_path):
    # Two clips, batch 2: every step sees the same clips with fresh noise and timesteps.
    parts = small_components()
    models = {"unet": parts["unet"], "text_encoder": parts["text_encoder"]}
    dataset = AnimatorClips(2, num_frames=6, resolution=64, seed=1)
    config = LoopConfig(steps=20, batch_size=2, lr=3e-3, warmup_steps=0, caption_dropout=0.0,
                        checkpoint_every=1000, log_every=1, cache_latents=True, seed=0)
    train_denoiser(parts, models, dataset, tmp_path, config)
    curve = losses(tmp_path)
    assert len(curve) == 20
    first, last = np.mean(curve[:5]), np.mean(curve[-5:])
    assert last < 0.8 * first, (first, last)


def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path):
    straight = run_loop(tmp_path / "a", steps=4)
    run_loop(tmp_path / "b", steps=2)
    assert [p.name for p in checkpoints(tmp_path / "b")] == ["checkpoint-0000002"]
    resumed = run_loop(tmp_path / "b", steps=4, resume=True)
    assert straight.keys() == resumed.keys()
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
    ema_a = load_file(checkpoints(tmp_path / "a")[-1] / "ema.safetensors")
    ema_b = load_file(checkpoints(tmp_path / "b")[-1] / "ema.safetensors")
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    # The weights did change, and the losses logged after resuming match the straight run.
    start = small_components()["unet"].state_dict()
    assert any(not torch.equal(start[k[5:]], v) for k, v in straight.items()
               if k.startswith("unet."))
    assert losses(tmp_path / "a") == losses(tmp_path / "b")

    # Starting over into a run folder with checkpoints is refused, not silently mixed in.
    with pytest.raises(UsageError, match="--resume"):
        train_base(SMALL, tmp_path / "b")


def test_only_requires_grad_parameters_train_and_are_checkpointed(tmp_path):
    # The LoRA case in miniature: a frozen text encoder and one trainable UNet block.
    parts = small_components()
    parts["unet"].requires_grad_(False)
    parts["unet"].conv_out.requires_grad_(True)
    before = {k: v.clone() for k, v in parts["unet"].state_dict().items()}
    config = LoopConfig(steps=2, batch_size=2, lr=1e-2, checkpoint_every=2, seed=0)
    train_denoiser(parts, {"unet": parts["unet"]}, AnimatorClips(2, 6, 64), tmp_path, config)
    saved = load_file(checkpoints(tmp_path)[-1] / "trainable.safetensors")
    assert set(saved) == {"unet.conv_out.weight", "unet.conv_out.bias"}
    after = parts["unet"].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"conv_out.weight", "conv_out.bias"}


def test_training_gives_back_subnormal_floats(tmp_path):
    """The loop flushes denormals for speed, process-wide; afterwards the caller's arithmetic
    has them again (a test after it, drawing floats with Hypothesis, once could not)."""
    run_loop(tmp_path, steps=1)
    assert (torch.tensor([1e-39]) * 1.0).item() > 0


def test_min_snr_weights_keep_the_pure_noise_step(tmp_path):
    scheduler = small_components()["scheduler"]
    t = torch.tensor([0, 100, 500, 999])
    w = loss_weights(scheduler, t, snr_gamma=5.0)
    assert w[-1] == 1.0 and w[2] == 1.0  # high noise: the plain v-loss
    assert 0 < w[0] < w[1] < 1  # low noise: scaled down
    assert torch.equal(loss_weights(scheduler, t, None), torch.ones(4))


def test_timestep_sampling_uniform_or_weighted_towards_high_noise():
    torch.manual_seed(0)
    uniform = sample_timesteps(20000, 1000, "uniform").float()
    high = sample_timesteps(20000, 1000, "high_noise").float()
    for t in (uniform, high):
        assert t.min() >= 0 and t.max() <= 999
    assert abs(uniform.mean() - 499.5) < 10
    assert abs(high.mean() - 666) < 10  # density proportional to t: mean 2/3 of the range
    assert abs((high >= 500).float().mean() - 0.75) < 0.02
    with pytest.raises(UsageError, match="unknown timestep_sampling 'cosine'"):
        LoopConfig.from_dict({"steps": 1, "batch_size": 1, "lr": 1e-3,
                              "timestep_sampling": "cosine"})


@pytest.mark.slow  # the whole command three times: train (both stages), resume, export
def test_cli_trains_resumes_and_exports(tmp_path, cli):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    run = tmp_path / "run"
    done = cli("train", "base", config, "-o", run, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["step"] == 4
    assert (run / "vae" / "config.json").is_file()
    assert len(AutoencoderKL.from_pretrained(run / "vae").config.latents_std) == 4
    assert [p.name for p in checkpoints(run)] == ["checkpoint-0000002", "checkpoint-0000004"]
    assert UNet3DConditionModel.from_pretrained(run / "model", subfolder="unet")

    more = cli("train", "base", config, "-o", run, "--resume", "--steps", "6",
               "--set", "stages.base.lr=0.0005", "--set", "stages.base.log_every=2")
    assert more.returncode == 0, more.stderr
    assert "resumed from" in more.stderr and checkpoints(run)[-1].name == "checkpoint-0000006"
    log = [json.loads(x) for x in (run / "loss.jsonl").open()]
    assert [entry["step"] for entry in log] == [1, 2, 3, 4, 6]  # steps 5-6 logged every 2
    assert log[-1]["lr"] == pytest.approx(5e-4)
    assert yaml.safe_load((run / "config.yaml").read_text())["stages"]["base"]["lr"] == 5e-4

    out = tmp_path / "exported"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    refused = cli("train", "export", run, "-o", out)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert (out / "mine.txt").read_text() == "keep me"

    exported = cli("train", "export", run, "-o", out, "--force")
    assert exported.returncode == 0, exported.stderr
    text_encoder = CLIPTextModel.from_pretrained(out, subfolder="text_encoder")
    assert next(text_encoder.parameters()).dtype == torch.float16
    ema = load_file(checkpoints(run)[-1] / "ema.safetensors")
    name = "final_layer_norm.weight"
    assert torch.equal(text_encoder.state_dict()[name], ema[f"text_encoder.{name}"].half())
    assert CLIPTokenizer.from_pretrained(out, subfolder="tokenizer")("a fish").input_ids == [
        49406, 320, 2759, 49407]


@pytest.mark.parametrize("override, message", [
    ("stages.base.batchsize=3", "stages.base has no 'batchsize'; it has clips, "),
    ("stages.base=3", "stages.base is a section; set one of its keys"),
    ("seed", "is not key=value"),
])
def test_config_overrides_change_existing_keys_only(override, message):
    from flipsketch.models.tiny import override_config

    config = load_config(CONFIG_PATH)
    override_config(config, "stages.base.batch_size=64")
    override_config(config, "mixed_precision=bf16")
    override_config(config, "model.unet.block_out_channels=[32, 64, 64]")
    assert config["stages"]["base"]["batch_size"] == 64 and config["mixed_precision"] == "bf16"
    assert config["model"]["unet"]["block_out_channels"] == [32, 64, 64]
    with pytest.raises(UsageError, match=re.escape(message)):
        override_config(config, override)


def test_latent_stats_normalise_the_vae_latents():
    from flipsketch.sampler.latents import encode_frames
    from flipsketch.training.base import measure_latent_stats
    from flipsketch.training.synth import SketchAnimator

    vae = small_components()["vae"]
    frames = torch.from_numpy(SketchAnimator(size=64, num_frames=6, seed=2).clip(0).frames)
    measure_latent_stats(vae, frames)
    assert len(vae.config.latents_mean) == 4
    with torch.no_grad():
        z = encode_frames(vae, frames)  # (6, 4, 8, 8), now normalised per channel
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-3)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-2)


@pytest.mark.slow  # a training curve
def test_vae_stage_lowers_the_reconstruction_loss(tmp_path):
    from flipsketch.training.base import train_vae
    from flipsketch.training.synth import SketchAnimator

    vae = small_components()["vae"]
    animator = SketchAnimator(size=64, seed=0)
    drawings = [animator.still(i) for i in range(4)]  # a fixed set; crops still vary
    curve = train_vae(vae, lambda i: drawings[i % 4], tmp_path, steps=12, batch_size=4, lr=3e-3,
                      crop=32, kl_weight=1e-6, stroke_weight=4.0)
    assert len(curve) == 12
    assert np.mean(curve[-3:]) < 0.8 * np.mean(curve[:3]), curve
    assert (tmp_path / "vae_loss.jsonl").is_file()


def test_worker_processes_give_the_same_run_as_the_loop_itself(tmp_path):
    # Clips drawn by two DataLoader workers arrive in the loop's own order, so a GPU run with
    # workers is the same run as one without (and resumes the same way).
    alone = run_loop(tmp_path / "alone", steps=3, cache_latents=False)
    workers = run_loop(tmp_path / "workers", steps=3, cache_latents=False, num_workers=2)
    assert alone.keys() == workers.keys()
    for name in alone:
        torch.testing.assert_close(workers[name], alone[name], rtol=0, atol=0)


def test_time_limit_ends_the_run_checkpointed_and_exported(tmp_path):
    parts = small_components()
    models = {"unet": parts["unet"], "text_encoder": parts["text_encoder"]}
    exported = []
    config = LoopConfig.from_dict({**{k: v for k, v in SMALL["stages"]["base"].items()
                                      if k != "clips"}, "steps": 10_000, "checkpoint_every": 500,
                                   "export_every": 500})
    summary = train_denoiser(parts, models, AnimatorClips(4, 6, 64, seed=3), tmp_path, config,
                             on_export=lambda weights, step: exported.append(step),
                             time_limit=1e-3)
    assert summary["step"] == 1  # the first step already ran past the limit
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-0000001"]
    assert exported == [1]
    entry = json.loads((tmp_path / "loss.jsonl").read_text().splitlines()[-1])
    assert entry["step"] == 1 and 0 <= entry["data_wait"] <= 1


def test_init_parts_start_from_a_model_folder_and_must_fit(tmp_path):
    from flipsketch.models.tiny import export_model

    source = export_model(small_components(), tmp_path / "source")
    config = {**SMALL, "init": {"from": str(source), "parts": ["vae", "text_encoder"]},
              "stages": {**SMALL["stages"], "base": {**SMALL["stages"]["base"], "steps": 1}}}
    train_base(config, tmp_path / "run")
    # The VAE stage was skipped: the run's VAE is the source's.
    assert not (tmp_path / "run" / "vae_loss.jsonl").exists()
    theirs = AutoencoderKL.from_pretrained(source, subfolder="vae").state_dict()
    ours = AutoencoderKL.from_pretrained(tmp_path / "run" / "vae").state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)

    wider = {**config, "init": {"from": str(source), "parts": ["unet"]},
             "model": {**SMALL["model"],
                       "unet": {**SMALL["model"]["unet"], "block_out_channels": [16, 32, 48]}}}
    with pytest.raises(UsageError, match="unet loaded to start from does not fit"):
        train_base(wider, tmp_path / "run2")
    # Frame positions hold no weights: a UNet without them does not fit a config with them.
    positioned = {**config, "init": {"from": str(source), "parts": ["unet"]},
                  "model": {**SMALL["model"],
                            "unet": {**SMALL["model"]["unet"], "frame_positions": 8}}}
    with pytest.raises(UsageError, match="unet loaded to start from does not fit"):
        train_base(positioned, tmp_path / "run4")
    with pytest.raises(UsageError, match="init.parts names scheduler"):
        train_base({**config, "init": {"from": str(source), "parts": ["scheduler"]}},
                   tmp_path / "run3")


class _TwinClips(torch.utils.data.Dataset):
    """Items 2k and 2k+1 are the same clip with the same caption: whatever the loop feeds the
    UNet for a pair differs only if their noise, timestep or caption dropout differ."""

    def __init__(self, pairs: int):
        self.clips = AnimatorClips(pairs, num_frames=6, resolution=64, seed=5)

    def __len__(self) -> int:
        return 2 * len(self.clips)

    def __getitem__(self, index: int) -> dict:
        return self.clips[index // 2]


@pytest.mark.parametrize("paired", [True, False])
def test_paired_items_share_a_batch_their_noise_timestep_and_dropout(tmp_path, paired):
    parts = small_components()
    seen = []  # (noisy latents, timesteps, text) of every UNet call
    parts["unet"].register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            (args[0].detach().clone(), args[1].clone(),
             kwargs["encoder_hidden_states"].detach().clone())),
        with_kwargs=True)
    models = {"unet": parts["unet"], "text_encoder": parts["text_encoder"]}
    config = LoopConfig(steps=6, batch_size=4, lr=1e-3, caption_dropout=0.5,
                        checkpoint_every=100, paired=paired, seed=0)
    train_denoiser(parts, models, _TwinClips(4), tmp_path, config)
    assert len(seen) == 6
    twins = [torch.equal(noisy[k], noisy[k + 1]) and t[k] == t[k + 1]
             and torch.equal(text[k], text[k + 1])
             for noisy, t, text in seen for k in (0, 2)]
    assert all(twins) if paired else not any(twins)


def test_paired_batches_keep_pairs_together_in_every_process():
    from flipsketch.training.batches import _index_batches

    for world in (1, 2):
        for rank in range(world):
            stream = _index_batches(10, 4, seed=3, rank=rank, world=world, start_batch=1,
                                    paired=True)
            for _ in range(8):
                batch = next(stream)
                assert all(batch[k] % 2 == 0 and batch[k + 1] == batch[k] + 1
                           for k in range(0, 4, 2)), batch


def test_paired_training_needs_an_even_batch():
    with pytest.raises(UsageError, match="even batch_size"):
        LoopConfig.from_dict({"steps": 1, "batch_size": 3, "lr": 1e-3, "paired": True})


def test_train_base_reads_the_data_settings_of_its_config(tmp_path, monkeypatch):
    """tiny.yaml's v3 data keys (travel, part_share, paired) reach the clips and the loop."""
    from flipsketch.training import base

    made = []
    real = base.AnimatorClips
    monkeypatch.setattr(base, "AnimatorClips",
                        lambda *args, **kwargs: made.append(real(*args, **kwargs)) or made[-1])
    data = {"travel": [0.06, 0.15], "part_share": 0.5, "paired": True, "doodle_share": 0.4}
    config = {**SMALL, "init": {"from": "shipped", "parts": []},
              "stages": {**SMALL["stages"], "vae": {**SMALL["stages"]["vae"], "steps": 0},
                         "base": {**SMALL["stages"]["base"], "steps": 1, **data}}}
    train_base(config, tmp_path / "run")
    animator = made[0].animator
    assert (animator.travel, animator.part_share, animator.paired, animator.doodle_share) == \
        ((0.06, 0.15), 0.5, True, 0.4)
    assert checkpoints(tmp_path / "run")  # and the paired loop ran
