"""Device discipline without a GPU: the sampler never mixes the model's device with another.

On CUDA, an op that mixes a CUDA tensor with a (non-scalar) CPU tensor raises "Expected all
tensors to be on the same device". The suite runs on the CPU, where that can never happen, so
here the models live on PyTorch's ``meta`` device instead: meta tensors carry shapes, dtypes
and a device but no values, and every op that mixes a meta tensor with a CPU tensor raises just
as CUDA would ("Tensor on device meta is not on the expected device cpu"). The scheduler keeps
its tables on the CPU (diffusers never moves them) and the sketch arrives as a CPU tensor, as
on a GPU. The one thing meta cannot do is give values back, so the sampler runs with
``output_type="latent"`` (no decoding to the host, alignment losses left as tensors) and the
decoder is run on meta separately; what needs values (the inversion cache's key, best-of-K's
scores, writing files) works on host copies by design and is covered by the CPU tests.

Before the fix of issue 21 the inversion failed here at its first step: ``_alpha_bar`` built
a 1-D CPU timestep and mixed it with the model's tensors in ``torch.where``.
"""

from __future__ import annotations

import pytest
import torch
from test_pipeline import a_sketch

from flipsketch.plugins import AlignSettings
from flipsketch.sampler.latents import decode_latents
from flipsketch.sampler.pipeline import FlipSketchPipeline
from flipsketch.sampler.schedule import renoise, split_prediction

from conftest import build_tiny_components

META = torch.device("meta")


def meta_pipe(**kwargs) -> FlipSketchPipeline:
    return FlipSketchPipeline(**build_tiny_components(device=META, **kwargs))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_schedule_arithmetic_stays_on_the_samples_device(prediction_type):
    scheduler = build_tiny_components(prediction_type=prediction_type)["scheduler"]
    assert scheduler.alphas_cumprod.device.type == "cpu"
    out = torch.empty(2, 4, 3, 8, 8, device=META)
    for t in (torch.tensor(981), 981, -1, torch.tensor([981, 21])):
        x0, eps = split_prediction(scheduler, out, out, t)
        assert renoise(scheduler, x0, eps, t).device == META


@pytest.mark.parametrize("keep_first_frame", [True, False])
def test_the_whole_sampler_runs_with_the_models_on_another_device(keep_first_frame):
    """Inversion, alignment, spatial and temporal composition, frame 1 pinned (or not),
    guidance and two seeds in one batch: every tensor the sampler makes follows the model."""
    pipe = meta_pipe()
    out = pipe("a fish swimming", a_sketch(), num_frames=4, num_inference_steps=5,
               seeds=(0, 1), tau1=2, tau2=3, keep_first_frame=keep_first_frame,
               align_settings=AlignSettings(iterations=2), output_type="latent")
    assert out.frames.device == META and out.frames.shape == (2, 4, 4, 8, 8)
    assert len(out.align_losses) == 2 and all(x.device == META for x in out.align_losses)


def test_text_only_and_unguided_runs_stay_on_the_models_device():
    pipe = meta_pipe()
    for guidance in (9.0, 1.0):
        out = pipe("a fish", None, num_frames=3, num_inference_steps=3, seeds=(4,),
                   guidance_scale=guidance, output_type="latent")
        assert out.frames.device == META


def test_decoding_stays_on_the_vaes_device_until_the_host_copy():
    pipe = meta_pipe()
    frames = decode_latents(pipe.vae, torch.empty(3, 4, 8, 8))  # latents arrive from the CPU
    assert frames.device == META and frames.shape == (3, 64, 64)


def test_the_same_run_on_the_cpu_gives_values_where_meta_gives_shapes(tiny_pipe):
    """The meta runs above prove devices; this proves they ran the path a real run takes."""
    out = tiny_pipe("a fish swimming", a_sketch(), num_frames=4, num_inference_steps=5,
                    seeds=(0, 1), tau1=2, tau2=3, align_settings=AlignSettings(iterations=2),
                    output_type="latent")
    assert out.frames.shape == (2, 4, 4, 8, 8) and torch.isfinite(out.frames).all()
    full = tiny_pipe("a fish swimming", a_sketch(), num_frames=4, num_inference_steps=5,
                     seeds=(0, 1), tau1=2, tau2=3, align_settings=AlignSettings(iterations=2))
    assert [len(x) for x in full.align_losses] == [2, 2]
    assert all(isinstance(v, float) for x in full.align_losses for v in x)
