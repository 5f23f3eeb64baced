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
Where a whole workflow must end in values (a ``batch`` job writes a file, ``eval captions``
prints losses), it runs on meta until its first copy to the host, which meta refuses with
its own error ("Cannot copy out of meta tensor"): reaching that line and no other error means
nothing before it mixed devices.

Dtypes: meta checks them only where a kernel does (convolutions do, matrix products do not),
so the bf16 runs below catch a float32 tensor reaching a bf16 convolution (the UNet's and the
VAE's first layers), not every mixing.

Before the fix of issue 21 the inversion failed here at its first step: ``_alpha_bar`` built
a 1-D CPU timestep and mixed it with the model's tensors in ``torch.where``.
"""

from __future__ import annotations

import pytest
import torch

from flipsketch import hookimpl
from flipsketch.batch import read_manifest, run_batch
from flipsketch.batch.manifest import ModelChoice
from flipsketch.batch.runner import process_device
from flipsketch.plugins import AlignSettings, PluginManager, get_manager
from flipsketch.sampler.inversion import DEMO_ENCODINGS
from flipsketch.sampler.latents import decode_latents
from flipsketch.sampler.pipeline import FlipSketchPipeline
from flipsketch.sampler.schedule import renoise, split_prediction

from testing import a_sketch, build_tiny_components, shared_sketch

META = torch.device("meta")


HOST_COPY = "Cannot copy out of meta tensor"  # meta's error at the first copy to the host


def meta_pipe(dtype: torch.dtype = torch.float32, **kwargs) -> FlipSketchPipeline:
    parts = build_tiny_components(device=META, **kwargs)
    for name in ("vae", "unet", "text_encoder"):
        parts[name] = parts[name].to(dtype)  # as --dtype bf16 loads them on a GPU
    return FlipSketchPipeline(**parts)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_schedule_arithmetic_stays_on_the_samples_device(prediction_type):
    scheduler = build_tiny_components(prediction_type=prediction_type)["scheduler"]
    assert scheduler.alphas_cumprod.device.type == "cpu"
    out = torch.empty(2, 4, 3, 8, 8, device=META)
    for t in (torch.tensor(981), 981, -1, torch.tensor([981, 21])):
        x0, eps = split_prediction(scheduler, out, out, t)
        assert renoise(scheduler, x0, eps, t).device == META


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("keep_first_frame", [True, False])
def test_the_whole_sampler_runs_with_the_models_on_another_device(keep_first_frame, dtype):
    """Inversion, alignment, spatial and temporal composition, frame 1 pinned (or not), the
    authors' frame numbering, guidance and two seeds in one batch: every tensor the sampler
    makes follows the model, in fp32 and bf16."""
    pipe = meta_pipe(dtype)
    out = pipe("a fish swimming", a_sketch(), num_frames=4, num_inference_steps=5,
               seeds=(0, 1), tau1=2, tau2=3, keep_first_frame=keep_first_frame,
               frame_index_base=0 if keep_first_frame else 1,
               align_settings=AlignSettings(iterations=2), output_type="latent")
    assert out.frames.device == META and out.frames.shape == (2, 4, 4, 8, 8)
    assert out.frames.dtype == torch.float32  # the sampler's arithmetic, whatever the model's
    assert len(out.align_losses) == 2 and all(x.device == META for x in out.align_losses)


@pytest.mark.parametrize("name", sorted(DEMO_ENCODINGS))
def test_every_inverter_encodes_and_inverts_on_the_models_device(name):
    """The demo's encodings: [0, 1] input, a posterior sample drawn with a host generator,
    several copies as one clip; in bf16, where the VAE's convolutions check the dtype."""
    pipe = meta_pipe(torch.bfloat16)
    inverter = get_manager().get("inverter", name)
    out = pipe("a fish", a_sketch(), num_frames=3, num_inference_steps=3, seeds=(0,),
               inverter=inverter, output_type="latent")
    assert out.frames.device == META


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


# -- workflows that end in values: on meta up to their first host copy ------------------------
class MetaBackbone:
    """A backbone that loads the tiny test model on meta (bf16), for whole workflows."""

    @hookimpl
    def register_backbones(self, register) -> None:
        register("meta-test", lambda model, **_: meta_pipe(torch.bfloat16))


def test_batch_jobs_run_on_the_models_device_up_to_writing(tmp_path):
    """Two jobs in one process (one model load): a drawing with best settings and a text-only
    one. Each gets as far as decoding's copy to the host, the first value a job needs; an
    earlier mixing of devices would be another error. The inversion cache is off: its key
    hashes the weights, which are values (covered on the CPU by test_inversion_cache)."""
    (tmp_path / "fish.png").write_bytes(shared_sketch("fish.png").read_bytes())
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("sketch,prompt,paper\nfish.png,a fish swimming,yes\n,a cloud,\n")
    manager = PluginManager(load_entry_points=False)
    manager.register(MetaBackbone(), name="meta-backbone")
    jobs = read_manifest(manifest, {"num_frames": 3, "num_inference_steps": 3, "size": 32},
                         manager=manager)
    result = run_batch(jobs, tmp_path / "out", model=ModelChoice("tiny", backbone="meta-test"),
                       cache=False, manager=manager)
    assert [r.status for r in result.reports] == ["failed", "failed"]
    assert all(r.error == f"NotImplementedError: {HOST_COPY}; no data!"
               for r in result.reports), [r.error for r in result.reports]


def test_caption_sensitivity_stays_on_the_models_device():
    """``eval captions`` noises and denoises on the model's device and copies the losses to
    the host once per timestep; it used to noise CUDA latents with CPU noise."""
    from flipsketch.evaluation.runs import caption_sensitivity

    with pytest.raises(NotImplementedError, match=HOST_COPY):
        caption_sensitivity(meta_pipe(torch.bfloat16), timesteps=(500,),
                            motions=("move_left",), clips_per_motion=2, repeats=1)


@pytest.mark.parametrize("requested, own, processes, expected", [
    (None, "cpu", 1, None),  # alone: the best device, as animate
    ("cuda", "cuda:0", 1, "cuda"),
    (None, "cuda:1", 2, "cuda:1"),  # one of several: its own GPU
    ("cuda", "cuda:1", 2, "cuda:1"),  # --device cuda: still one GPU each, not cuda:0 twice
    ("cuda:0", "cuda:1", 2, "cuda:0"),  # an index given: as asked
    ("cpu", "cuda:1", 2, "cpu"),
])
def test_each_batch_process_loads_on_its_own_device(requested, own, processes, expected):
    assert process_device(requested, torch.device(own), processes) == expected
