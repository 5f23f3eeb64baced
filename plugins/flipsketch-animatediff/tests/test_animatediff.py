"""The AnimateDiff backbone plugin, installed for real, on a tiny random Stable Diffusion 1.5
layout + motion adapter saved as safetensors and loaded through ``--backbone animatediff``.

What it proves: FlipSketch's hooks are not ModelScope-shaped. On diffusers' ``UNetMotionModel``
(motion modules after 2D blocks, not ``UNet3DConditionModel``'s temporal convolutions and
``temp_attentions``), the built-in composer steers every spatial self-attention and every
motion module's temporal self-attention, and the built-in inversion, alignment and sampler
run unchanged.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from flipsketch.api import load_pipeline
from flipsketch.errors import ModelLoadError, UsageError
from flipsketch.sampler.alignment import AlignSettings, gradient_align
from flipsketch.sampler.attention import Composition, CompositionSettings

from testing import TEST_DEVICE, a_sketch, build_tiny_components, denoise_inverted, read_animation

DISTRIBUTION = "flipsketch-animatediff"
MAX_FRAMES = 16  # the tiny adapter's motion_max_seq_length


@pytest.fixture(scope="module")
def plugin():
    try:
        importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{DISTRIBUTION} is not installed; run "
                    "'pip install -e plugins/flipsketch-animatediff'")
    import flipsketch_animatediff

    return flipsketch_animatediff


def tiny_sd_parts(seed: int = 0) -> dict:
    """A tiny SD-1.5-layout model: conftest's VAE, CLIP text encoder (d = 16), tokenizer and
    scheduler, a 2D UNet with SD's block types, and a motion adapter matching its blocks."""
    from diffusers import MotionAdapter, UNet2DConditionModel

    parts = build_tiny_components(seed=seed)
    del parts["unet"]  # conftest's is a UNet3DConditionModel (ModelScope's layout)
    torch.manual_seed(seed)
    parts["unet"] = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
    )
    parts["motion_adapter"] = MotionAdapter(
        block_out_channels=(16, 32), motion_layers_per_block=1, motion_num_attention_heads=2,
        motion_norm_num_groups=8, motion_max_seq_length=MAX_FRAMES,
    )
    return parts


def save_parts(parts: dict, folder: Path) -> Path:
    """Each part in its own subfolder, safetensors weights: the layout the backbone reads."""
    for name, part in parts.items():
        part.save_pretrained(folder / name)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """SD parts with ``motion_adapter/`` beside them, as ``AnimateDiffPipeline`` saves them."""
    return save_parts(tiny_sd_parts(), tmp_path_factory.mktemp("animatediff") / "tiny-sd")


def load(model: str | Path, **kwargs):
    return load_pipeline(str(model), backbone="animatediff", device=str(TEST_DEVICE),
                         dtype="fp32", **kwargs)


@pytest.fixture(scope="module")
def pipe(plugin, model_dir):
    return load(model_dir)


def self_attention_paths(unet) -> tuple[set[str], set[str]]:
    """(spatial, temporal) attn1 paths, read from the module tree by module class: the
    spatial transformers of the SD blocks and the motion modules of the adapter."""
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    spatial, temporal = set(), set()
    for name, module in unet.named_modules():
        kind = spatial if isinstance(module, Transformer2DModel) else \
            temporal if isinstance(module, AnimateDiffTransformer3D) else None
        if kind is not None:
            kind.update(f"{name}.transformer_blocks.{i}.attn1"
                        for i in range(len(module.transformer_blocks)))
    return spatial, temporal


# -- the plugin and its backbone ---------------------------------------------------------------
def test_listed_by_the_cli_as_a_backbone(cli, fresh_plugins, monkeypatch, plugin):
    monkeypatch.delenv("FLIPSKETCH_LOAD_PLUGINS", raising=False)
    result = cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    ours = [p for p in listed["plugins"] if p["distribution"] == DISTRIBUTION]
    assert len(ours) == 1 and ours[0]["builtin"] is False
    assert listed["stages"]["backbone"]["implementations"]["animatediff"] == ours[0]["name"]


def test_model_names(plugin, model_dir, tmp_path):
    parse = plugin.parse_model
    assert parse("animatediff") == (plugin.DEFAULT_BASE, plugin.DEFAULT_ADAPTER)
    assert parse("org/sd15+org/adapter") == ("org/sd15", "org/adapter")
    assert parse(str(model_dir)) == (str(model_dir), None)
    assert parse(f"{model_dir}+{model_dir / 'motion_adapter'}") == (
        str(model_dir), str(model_dir / "motion_adapter"))
    plus = tmp_path / "a+b"
    plus.mkdir()
    assert parse(str(plus)) == (str(plus), None)  # a folder whose name has a "+"
    for bad in ("tiny", "org/sd15+", "not a model", "org/sd15+x.safetensors"):
        with pytest.raises(UsageError, match="--model animatediff"):
            parse(bad)


def test_the_unet_is_diffusers_motion_unet_with_sd_conventions(pipe, model_dir):
    """Same module tree and config as diffusers' own UNetMotionModel, and with one prompt
    embedding per clip it computes what AnimateDiffPipeline's per-frame embeddings give."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    unet = pipe.unet
    assert isinstance(unet, UNetMotionModel)
    assert (unet.config.sample_size, unet.config.in_channels) == (8, 4)
    assert pipe.model_resolution == 64
    reference = UNetMotionModel.from_unet2d(
        UNet2DConditionModel.from_pretrained(model_dir / "unet"),
        MotionAdapter.from_pretrained(model_dir / "motion_adapter")).to(TEST_DEVICE)
    assert list(unet.attn_processors) == list(reference.attn_processors)
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 3, 8, 8, device=TEST_DEVICE)  # (b, c, f, h, w)
    embeds = pipe.encode_prompt(["a fish", "a bird"])  # (b, tokens, d)
    with torch.no_grad():
        ours = pipe.predict(latents, 500, embeds)
        theirs = reference(latents, 500, embeds.repeat_interleave(3, dim=0)).sample
    torch.testing.assert_close(ours, theirs)
    # The DDIM settings AnimateDiff's adapters were trained with.
    assert pipe.scheduler.config.beta_schedule == "linear"
    assert pipe.scheduler.config.timestep_spacing == "linspace"


def test_frames_beyond_the_adapter_positions_are_a_usage_error(pipe):
    latents = torch.zeros(1, 4, MAX_FRAMES + 1, 8, 8, device=TEST_DEVICE)
    with pytest.raises(UsageError, match=f"--frames {MAX_FRAMES}"):
        pipe.predict(latents, 10, pipe.encode_prompt([""]))


# -- composition -------------------------------------------------------------------------------
def test_composer_steers_every_spatial_and_motion_module_self_attention(pipe):
    spatial, temporal = self_attention_paths(pipe.unet)
    # Tiny UNet: cross-attention blocks down 0, mid, up 1 (x2); a motion module after every
    # resnet of every block, mid included: 1 + 1 down, 2 + 2 up, 1 mid.
    assert (len(spatial), len(temporal)) == (4, 7)
    assert all(".motion_modules." in path for path in temporal)
    original = dict(pipe.unet.attn_processors)
    composition = Composition(pipe.unet, CompositionSettings())
    try:
        assert composition.composed_layers == {
            **{path: "SpatialCompositionProcessor" for path in spatial},
            **{path: "TemporalCompositionProcessor" for path in temporal}}
        # The motion modules' second self-attention (attn2) stays plain, as in ModelScope's
        # temporal blocks; so does every cross-attention.
        assert not any(path.endswith("attn2") for path in composition.composed_layers)
    finally:
        composition.remove()
    assert dict(pipe.unet.attn_processors) == original


def test_a_full_run_inverts_aligns_and_composes(pipe):
    kwargs = dict(num_frames=4, num_inference_steps=5, seeds=[1])
    full = pipe("a fish", a_sketch(), lambda_=0.0, **kwargs)
    assert full.frames.shape == (1, 4, 64, 64)
    assert full.frames.min() >= 0 and full.frames.max() <= 1
    assert len(full.align_losses) == 2  # tau1 = 2T/5: steps 0 and 1 aligned
    stronger = pipe("a fish", a_sketch(), lambda_=1.0, **kwargs).frames
    plain = pipe("a fish", a_sketch(), compose="none", **kwargs).frames
    temporal = pipe("a fish", a_sketch(), compose="temporal", lambda_=1.0, **kwargs).frames
    assert not torch.allclose(full.frames, plain, atol=1e-5)
    assert not torch.allclose(full.frames, stronger, atol=1e-6)  # lambda reaches C^T
    assert not torch.allclose(temporal, plain, atol=1e-6)  # the motion modules are steered


def test_the_motion_unet_keeps_every_tensor_on_the_models_device(plugin, model_dir):
    """The device-discipline check of tests/test_devices.py on this backbone: the models on
    ``meta`` (shapes and devices, no values), the scheduler's tables and the sketch on the CPU;
    any mixing raises here as it would on CUDA."""
    meta = load(model_dir)
    for part in (meta.unet, meta.vae, meta.text_encoder):
        part.to("meta")
    out = meta("a fish", a_sketch(), num_frames=4, num_inference_steps=5, seeds=[1, 2],
               keep_first_frame=True, align_settings=AlignSettings(iterations=2),
               output_type="latent")
    assert out.frames.device.type == "meta" and out.frames.shape == (2, 4, 4, 8, 8)


def test_inverting_then_denoising_reproduces_the_sketch_latent(plugin, model_dir):
    """As for the core: a smooth (small-output) random UNet reconstructs the sketch's latent
    from its inversion, far better than from noise."""
    pipe = load(model_dir)
    with torch.no_grad():
        pipe.unet.conv_out.weight.mul_(0.05)
    inverted = denoise_inverted(pipe, a_sketch(), steps=25)
    from_noise = denoise_inverted(pipe, a_sketch(), steps=25, start=torch.randn)
    assert inverted < 0.3
    assert inverted < from_noise / 50


def test_alignment_lowers_the_loss_through_the_motion_modules(pipe):
    pipe.scheduler.set_timesteps(10)
    t = pipe.scheduler.timesteps[0]
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 5, 8, 8).to(TEST_DEVICE)
    reference = torch.randn(1, 4, 1, 8, 8).to(TEST_DEVICE)
    cond = pipe.encode_prompt(["a fish swimming"]).expand(2, -1, -1)
    with torch.no_grad():
        target = pipe.predict(reference, t, pipe.encode_prompt([""]))
    aligned, losses = gradient_align(pipe, latents, reference, t, cond, target,
                                     AlignSettings(iterations=8, lr=5e-2, checkpointing=False))
    assert losses[-1] < losses[0] * 0.9
    torch.testing.assert_close(aligned[:, :, :1], reference.expand(2, -1, -1, -1, -1))
    assert all(p.grad is None for p in pipe.unet.parameters())


def test_alignment_with_gradient_checkpointing(pipe):
    pipe.scheduler.set_timesteps(10)
    t = pipe.scheduler.timesteps[0]
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 3, 8, 8, generator=generator).to(TEST_DEVICE)
    reference = torch.randn(1, 4, 1, 8, 8, generator=generator).to(TEST_DEVICE)
    with torch.no_grad():
        target = pipe.predict(reference, t, pipe.encode_prompt([""]))
    calls = []  # a layer inside a block runs again in the backward pass when checkpointed
    pipe.unet.down_blocks[0].resnets[0].register_forward_hook(lambda *_: calls.append(1))
    results, counts = [], []
    for flag in (True, False):
        calls.clear()
        results.append(gradient_align(pipe, latents, reference, t,
                                      pipe.encode_prompt(["a fish"]), target,
                                      AlignSettings(iterations=2, checkpointing=flag)))
        counts.append(len(calls))
    assert counts[0] == 2 * counts[1] > 0  # on a UNet without ModelScope's transformer_in
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)


# -- loading -----------------------------------------------------------------------------------
def test_animate_end_to_end_from_the_cli(cli, fresh_plugins, monkeypatch, plugin, model_dir,
                                         tmp_path):
    monkeypatch.delenv("FLIPSKETCH_LOAD_PLUGINS", raising=False)
    sketch = tmp_path / "fish.png"
    Image.fromarray((a_sketch().numpy() * 255).astype("uint8")).save(sketch)
    out = tmp_path / "fish.gif"
    result = cli("animate", sketch, "a fish swimming", "--backbone", "animatediff", "--model",
                 model_dir, "--steps", "2", "--frames", "3", "--size", "32", "-o", out,
                 "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert read_animation(out).shape[:3] == (3, 32, 32)


def test_base_plus_adapter_and_a_prebuilt_motion_unet_load_the_same_model(plugin, model_dir,
                                                                          tmp_path):
    """BASE+ADAPTER, and a folder whose unet/ is already a UNetMotionModel (what
    AnimateDiffPipeline.save_pretrained writes; +ADAPTER swaps its motion modules), give the
    folder-with-adapter model."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    base = tmp_path / "sd"
    shutil.copytree(model_dir, base, ignore=shutil.ignore_patterns("motion_adapter"))
    adapter = model_dir / "motion_adapter"
    prebuilt = tmp_path / "animatediff-pipeline"
    shutil.copytree(base, prebuilt)
    shutil.rmtree(prebuilt / "unet")
    UNetMotionModel.from_unet2d(UNet2DConditionModel.from_pretrained(base / "unet"),
                                MotionAdapter.from_pretrained(adapter)
                                ).save_pretrained(prebuilt / "unet")
    latents = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    outputs = []
    other = tmp_path / "other-adapter"
    tiny_sd_parts(seed=1)["motion_adapter"].save_pretrained(other)
    for model in (model_dir, f"{base}+{adapter}", prebuilt, f"{prebuilt}+{other}",
                  f"{base}+{other}"):
        loaded = load(model)
        outputs.append(loaded.predict(latents.to(TEST_DEVICE), 300,
                                      loaded.encode_prompt(["a fish"])))
    torch.testing.assert_close(outputs[1], outputs[0])
    torch.testing.assert_close(outputs[2], outputs[0])
    torch.testing.assert_close(outputs[3], outputs[4])  # the named adapter's modules won
    assert not torch.allclose(outputs[3], outputs[0])


def test_pickled_weights_load_only_when_allowed(cli, fresh_plugins, monkeypatch, plugin,
                                                model_dir, tmp_path):
    from diffusers import MotionAdapter

    pickled = tmp_path / "pickled"
    shutil.copytree(model_dir, pickled)
    shutil.rmtree(pickled / "motion_adapter")
    MotionAdapter.from_pretrained(model_dir / "motion_adapter").save_pretrained(
        pickled / "motion_adapter", safe_serialization=False)
    assert list((pickled / "motion_adapter").glob("*.bin"))
    with pytest.raises(ModelLoadError, match="--allow-pickle"):
        load(pickled)
    monkeypatch.delenv("FLIPSKETCH_LOAD_PLUGINS", raising=False)
    sketch = tmp_path / "fish.png"
    Image.fromarray((a_sketch().numpy() * 255).astype("uint8")).save(sketch)
    refused = cli("animate", sketch, "a fish", "--backbone", "animatediff", "--model", pickled,
                  "-o", tmp_path / "fish.gif")
    assert refused.returncode == 2 and "--allow-pickle" in refused.stderr
    assert not (tmp_path / "fish.gif").exists()
    assert isinstance(load(pickled, allow_pickle=True).unet.config.sample_size, int)


@pytest.mark.parametrize(("error", "says"), [
    ("GatedRepoError", "motion adapter 'org/adapter' is gated on the hub"),
    ("RepositoryNotFoundError", "no model 'org/adapter' on the Hugging Face hub")])
def test_a_gated_adapter_is_not_reported_as_unknown(monkeypatch, plugin, error, says):
    """A hub adapter goes through the core's ``hub_snapshot``: GatedRepoError subclasses
    RepositoryNotFoundError, and a gated adapter must still say to accept its terms."""
    import huggingface_hub
    from huggingface_hub import errors

    def refuse(*args, **kwargs):
        cls = getattr(errors, error)
        exc = cls.__new__(cls)  # without an HTTP response: only its class matters here
        Exception.__init__(exc, "refused")
        raise exc

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(ModelLoadError, match=says):
        plugin._adapter_folder("org/adapter", allow_pickle=False)
