"""Algorithm 1 on tiny random-weight diffusers modules: schedule, inversion, alignment, seeds."""

from __future__ import annotations

import pytest
import torch

from flipsketch.sampler.alignment import AlignSettings, gradient_align
from flipsketch.sampler.inversion import ddim_invert
from flipsketch.sampler.pipeline import FlipSketchPipeline

from testing import (
    TEST_DEVICE,
    a_sketch,
    build_tiny_components,
    clips_of_call,
    denoise_inverted,
    record_unet_calls,
)


@pytest.mark.parametrize("one_call", [True, False])
def test_unet_calls_follow_the_schedule_and_waste_no_pass(tiny_pipe, one_call):
    """T = 6, M = 4, tau1 = 2, tau2 = 3, 2 alignment iterations, 2 samples with CFG;
    frame 1 free after the windows, as in the paper. The reference pass and the joint pass of
    a step take one UNet call each, or share one (``one_call``)."""
    tiny_pipe.one_call = one_call
    calls, _ = record_unet_calls(tiny_pipe)
    tiny_pipe("a fish", a_sketch(), num_frames=4, num_inference_steps=6, seeds=[0, 1],
              tau1=2, tau2=3, align_settings=AlignSettings(iterations=2),
              keep_first_frame=False)

    def passes(n: int) -> list:
        """Reference x N (unguided), then one batched uncond+cond joint pass."""
        return [((1, n), (4, 4))] if one_call else [(1, n), (4, 4)]

    inversion = [(1, 1)] * 6
    # steps 0, 1: the alignment target (reference alone), 2 alignment iterations (cond only,
    # 2 samples), then the passes; step 2 composing only; step 3 = tau2: the last composed
    # step, N = 1; steps 4, 5: no reference pass any more.
    expected = [*inversion, (1, 1), (2, 4), (2, 4), *passes(4), (1, 1), (2, 4), (2, 4),
                *passes(3), *passes(2), *passes(1), (4, 4), (4, 4)]
    assert calls == expected


def test_keeping_frame_one_follows_the_reference_to_the_last_step(tiny_pipe):
    """keep_first_frame: one-frame reference passes after composition, and frame 1 ends as
    the sketch's own reconstruction (the reference trajectory denoised to the end)."""
    calls, _ = record_unet_calls(tiny_pipe)
    out = tiny_pipe("a fish", a_sketch(), num_frames=4, num_inference_steps=6, seeds=[0],
                    tau1=0, tau2=1, aligner=None, keep_first_frame=True)
    assert calls[6:] == [(1, 4), (2, 4), (1, 3), (2, 4),  # composing, N = 4 then 3
                         (1, 1), (2, 4), (1, 1), (2, 4), (1, 1), (2, 4),  # advancing frame 1
                         (2, 4)]  # last step: frame 1 set, no reference pass needed
    # The reference trajectory alone: invert, then denoise with the null prompt.
    pipe = tiny_pipe
    null = pipe.encode_prompt([""])
    pipe.scheduler.set_timesteps(6)
    latent = ddim_invert(pipe, pipe.encode_sketch(a_sketch()), null, pipe.scheduler.timesteps)
    for t in pipe.scheduler.timesteps[:-1]:
        latent = pipe.scheduler.step(pipe.predict(latent, t, null), t, latent).prev_sample
    # The last step denoises frame 1 jointly; before it frame 1 was exactly the reference.
    free = tiny_pipe("a fish", a_sketch(), num_frames=4, num_inference_steps=6, seeds=[0],
                     tau1=0, tau2=1, aligner=None, keep_first_frame=False)
    kept_error = (out.frames[0, 0] - pipe.decode(latent)[0, 0]).abs().mean()
    free_error = (free.frames[0, 0] - pipe.decode(latent)[0, 0]).abs().mean()
    assert kept_error < free_error


def test_one_frame_reference_pass_doubles_as_the_alignment_target(tiny_pipe):
    calls, _ = record_unet_calls(tiny_pipe)
    tiny_pipe("a fish", a_sketch(), num_frames=3, num_inference_steps=4, seeds=[0],
              tau1=3, tau2=0, guidance_scale=1.0, align_settings=AlignSettings(iterations=1))
    # N = 3 at step 0 (the target needs its own 1-frame pass); later the reference pass is
    # one frame (composition off after step 0), so the target serves as it, and the last
    # step needs no reference.
    assert calls[4:] == [(1, 1), (1, 3), (1, 3), (1, 3),
                         (1, 1), (1, 3), (1, 3),
                         (1, 1), (1, 3), (1, 3),
                         (1, 3)]


def test_text_only_mode_is_plain_guided_sampling(tiny_pipe):
    calls, _ = record_unet_calls(tiny_pipe)
    out = tiny_pipe("a fish", None, num_frames=4, num_inference_steps=5, seeds=[3])
    assert calls == [(2, 4)] * 5
    assert out.frames.shape == (1, 4, 64, 64)


def test_same_seed_same_frames_and_samples_do_not_depend_on_their_batch(tiny_pipe):
    kwargs = dict(num_frames=4, num_inference_steps=4, tau1=1, tau2=2)
    first = tiny_pipe("a fish", a_sketch(), seeds=[5, 6], **kwargs).frames
    again = tiny_pipe("a fish", a_sketch(), seeds=[5, 6], **kwargs).frames
    alone = tiny_pipe("a fish", a_sketch(), seeds=[6], **kwargs).frames
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first[0], first[1])
    torch.testing.assert_close(first[1], alone[0], rtol=1e-4, atol=1e-4)
    assert first.min() >= 0 and first.max() <= 1


def test_alignment_lowers_the_loss_and_never_moves_frame_1(tiny_pipe, device):
    pipe = tiny_pipe
    pipe.scheduler.set_timesteps(10)
    t = pipe.scheduler.timesteps[0]
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 5, 8, 8).to(device)
    reference = torch.randn(1, 4, 1, 8, 8).to(device)
    cond = pipe.encode_prompt(["a fish swimming"]).expand(2, -1, -1)
    null = pipe.encode_prompt([""])
    with torch.no_grad():
        target = pipe.predict(reference, t, null)
    aligned, losses = gradient_align(pipe, latents, reference, t, cond, target,
                                     AlignSettings(iterations=8, lr=5e-2))
    assert len(losses) == 8
    assert losses[-1] < losses[0] * 0.9
    assert all(b <= a * 1.05 for a, b in zip(losses, losses[1:], strict=False))  # Adam
    torch.testing.assert_close(aligned[:, :, :1], reference.expand(2, -1, -1, -1, -1))
    assert not torch.allclose(aligned[:, :, 1:], latents[:, :, 1:])
    # The UNet's weights are not touched and collect no gradients.
    assert all(p.grad is None for p in pipe.unet.parameters())


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_inversion_is_the_exact_inverse_of_ddim_for_a_fixed_model_output(prediction_type):
    """With a UNet whose output does not depend on its input, DDIM inversion is exact."""
    components = build_tiny_components(prediction_type=prediction_type, device=TEST_DEVICE)
    with torch.no_grad():
        components["unet"].conv_out.weight.zero_()
        components["unet"].conv_out.bias.fill_(0.3)
    pipe = FlipSketchPipeline(**components)
    assert denoise_inverted(pipe, a_sketch(), steps=25) < 1e-4


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_inverting_then_denoising_reproduces_the_sketch_latent(prediction_type):
    """A smooth (small-output) random UNet: close reconstruction, far better than noise."""
    components = build_tiny_components(prediction_type=prediction_type, device=TEST_DEVICE)
    with torch.no_grad():
        components["unet"].conv_out.weight.mul_(0.05)
    pipe = FlipSketchPipeline(**components)
    inverted = denoise_inverted(pipe, a_sketch(), steps=25)
    from_noise = denoise_inverted(pipe, a_sketch(), steps=25, start=torch.randn)
    assert inverted < 0.3
    assert inverted < from_noise / 50


def test_composition_changes_the_result_and_lambda_matters(tiny_pipe):
    kwargs = dict(num_frames=4, num_inference_steps=5, seeds=[1], aligner=None)
    composed = tiny_pipe("a fish", a_sketch(), lambda_=0.0, **kwargs).frames
    stronger = tiny_pipe("a fish", a_sketch(), lambda_=1.0, **kwargs).frames
    plain = tiny_pipe("a fish", a_sketch(), compose="none", **kwargs).frames
    assert not torch.allclose(composed, plain, atol=1e-5)
    assert not torch.allclose(composed, stronger, atol=1e-6)


@pytest.mark.parametrize("key, paper_value, own_value", [("lambda_scale", 0.02, 1.0),
                                                        ("lambda_rule", "logit", "weight")])
def test_the_sampler_takes_eq_9s_constant_and_rule_from_the_unets_config(
        tiny_pipe, key, paper_value, own_value):
    """A UNet that records eq. 9's ``lambda_scale`` or ``lambda_rule`` in its config is
    sampled with it (what passing it gives); one that records none with the paper's; an
    explicit value wins."""
    kwargs = dict(num_frames=4, num_inference_steps=4, seeds=[1], aligner=None, lambda_=1.0,
                  **({"lambda_scale": 1.0} if key == "lambda_rule" else {}))

    def frames(**more):
        return tiny_pipe("a fish", a_sketch(), **kwargs, **more).frames

    paper, own = frames(), frames(**{key: own_value})
    torch.testing.assert_close(paper, frames(**{key: paper_value}), rtol=0, atol=0)
    assert (paper - own).abs().max() > 1e-4
    tiny_pipe.unet.register_to_config(**{key: own_value})
    torch.testing.assert_close(frames(), own, rtol=0, atol=0)
    torch.testing.assert_close(frames(**{key: paper_value}), paper, rtol=0, atol=0)


def test_a_unet_recording_an_unknown_rule_is_refused_by_name(tiny_pipe):
    tiny_pipe.unet.register_to_config(lambda_rule="softmax")
    with pytest.raises(ValueError, match="config.json has lambda_rule 'softmax'"):
        tiny_pipe("a fish", a_sketch(), num_frames=4, num_inference_steps=2, aligner=None)


def test_spatial_tokens_equal_to_frame_count_do_not_confuse_the_layers():
    """Latent 4x4 = 16 tokens with 16 frames: layers are chosen by place, not by shape."""
    components = build_tiny_components(device=TEST_DEVICE)
    from diffusers import UNet3DConditionModel

    components["unet"] = UNet3DConditionModel.from_config(
        {**components["unet"].config, "sample_size": 4}).to(TEST_DEVICE)
    pipe = FlipSketchPipeline(**components)
    sketch = torch.nn.functional.interpolate(a_sketch()[None, None], size=32)[0, 0]
    out = pipe("a fish", sketch, num_frames=16, num_inference_steps=2, seeds=[0],
               aligner=None)
    assert out.frames.shape == (1, 16, 32, 32)


def test_gradient_checkpointing_changes_memory_not_results(tiny_pipe, device):
    pipe = tiny_pipe
    pipe.scheduler.set_timesteps(10)
    t = pipe.scheduler.timesteps[2]
    torch.manual_seed(1)
    latents = torch.randn(1, 4, 4, 8, 8).to(device)
    reference = torch.randn(1, 4, 1, 8, 8).to(device)
    cond = pipe.encode_prompt(["a fish"])
    with torch.no_grad():
        target = pipe.predict(reference, t, pipe.encode_prompt([""]))
    # Checkpointing shows as the recomputation: a layer inside a block runs again in the
    # backward pass.
    calls = []
    pipe.unet.down_blocks[0].resnets[0].register_forward_hook(lambda *_: calls.append(1))
    results, counts = [], []
    for flag in (True, False):
        calls.clear()
        results.append(gradient_align(pipe, latents, reference, t, cond, target,
                                      AlignSettings(iterations=3, checkpointing=flag)))
        counts.append(len(calls))
    assert counts[0] == 2 * counts[1] > 0
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-5)
    # The UNet's blocks are back to their own forward afterwards.
    assert all("forward" not in vars(block) for block in pipe.unet.down_blocks)


def test_a_sketch_seeds_frame_one_even_with_every_stage_off(tiny_pipe):
    """The paper's naive baseline [x_T^r, f_T]: no alignment, no composition, frame 1 pinned
    at the start only. It costs plain sampling plus the inversion, and the sketch shows."""
    calls, _ = record_unet_calls(tiny_pipe)
    naive = dict(num_frames=4, num_inference_steps=5, seeds=[3], tau1=0, tau2=-1,
                 aligner=None, composer=None, keep_first_frame=False)
    line = tiny_pipe("a fish", a_sketch(), **naive)
    assert calls == [(1, 1)] * 5 + [(2, 4)] * 5  # inversion, then the plain joint passes
    dot = torch.ones(64, 64)
    dot[28:36, 28:36] = 0
    other = tiny_pipe("a fish", dot, **naive)
    text_only = tiny_pipe("a fish", None, num_frames=4, num_inference_steps=5, seeds=[3])
    assert (line.frames - text_only.frames).abs().max() > 1e-3
    assert (line.frames - other.frames).abs().max() > 1e-3


def test_ablation_rows_pin_frame_one_for_the_same_steps(tiny_pipe):
    """Switching a stage off changes only that stage: frame 1 starts from x_T^r and follows
    the reference trajectory for the same steps (i <= tau2 = 3 here) with or without
    alignment, then moves freely."""
    settings = dict(num_frames=4, num_inference_steps=6, seeds=[0], tau1=2, tau2=3,
                    keep_first_frame=False, guidance_scale=1.0, composer=None,
                    align_settings=AlignSettings(iterations=1))

    def frame_one_per_step(**stages) -> list[torch.Tensor]:
        """Frame 1 as each joint pass (1 sample, 4 frames, outside alignment) sees it."""
        seen = []

        def hook(module, args):
            x = clips_of_call(module, args[0])[-1]  # (b, c, f, h, w): the last pass's clips
            if x.shape[2] == 4 and not torch.is_grad_enabled():
                seen.append(x[0, :, 0].clone())  # (c, h, w)

        handle = tiny_pipe.unet.register_forward_pre_hook(hook)
        try:
            tiny_pipe("a fish", a_sketch(), **settings, **stages)
        finally:
            handle.remove()
        return seen

    aligned = frame_one_per_step()
    no_stages = frame_one_per_step(aligner=None)
    assert len(aligned) == len(no_stages) == 6
    null = tiny_pipe.encode_prompt([""])
    tiny_pipe.scheduler.set_timesteps(6)
    x_T = ddim_invert(tiny_pipe, tiny_pipe.encode_sketch(a_sketch()), null,
                      tiny_pipe.scheduler.timesteps)  # (1, c, 1, h, w)
    torch.testing.assert_close(no_stages[0], x_T[0, :, 0])  # a sketch always seeds frame 1
    for step in range(4):  # the same 1-frame null-prompt trajectory in both rows
        torch.testing.assert_close(aligned[step], no_stages[step])
    assert not torch.allclose(aligned[5], no_stages[5])  # free once the windows close


def test_the_aligner_has_an_optimiser_for_every_name_the_settings_accept():
    from flipsketch.plugins import ALIGN_OPTIMIZERS
    from flipsketch.sampler.alignment import OPTIMIZERS

    assert tuple(OPTIMIZERS) == ALIGN_OPTIMIZERS
