"""Clips of different lengths in one UNet call (issue 22): the reference pass and the joint pass
of a step can share a call (``FlipSketchPipeline.one_call``) and compute what two calls would,
up to float rounding."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.resnet import TemporalConvLayer
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

from flipsketch.models.frame_positions import add_frame_positions
from flipsketch.plugins import CompositionSettings
from flipsketch.sampler.attention import Composition, compose_attention
from flipsketch.sampler.clips import (
    TEMPORAL_LAYERS,
    ClipLayout,
    layout_in_progress,
    predict_clips,
    supports_one_call,
)

from testing import a_sketch, record_unet_calls

# A larger batch may sum in another order; anything the call computed differently (a frame
# count, a text embedding, a composed row) moves outputs by 1e-2 and more.
ROUNDING = dict(rtol=1e-4, atol=1e-5)


@torch.no_grad()
def live_temporal_layers(unet) -> torch.nn.Module:
    """diffusers starts the temporal layers' output projections at zero (a new video UNet is
    its image UNet): give them weights, so that frames mix as in a trained model."""
    generator = torch.Generator().manual_seed(5)
    for layer in unet.modules():
        if isinstance(layer, TEMPORAL_LAYERS):
            for param in layer.parameters():
                param.add_(0.2 * torch.randn(param.shape, generator=generator).to(param))
    return unet.eval()


def inputs(unet, device):
    """An N = 3 reference clip (one latent repeated) and a 2-clip, 4-frame joint batch with
    their own text embeddings."""
    generator = torch.Generator().manual_seed(3)
    d = unet.config.cross_attention_dim
    reference = torch.randn(1, 4, 1, 8, 8, generator=generator).expand(-1, -1, 3, -1, -1)
    joint = torch.randn(2, 4, 4, 8, 8, generator=generator)
    null = torch.randn(1, 7, d, generator=generator)
    embeds = torch.randn(2, 7, d, generator=generator)
    return [x.to(device) for x in (reference, null, joint, embeds)]


@torch.no_grad()
@pytest.mark.parametrize("positions", [False, True])
def test_one_call_gives_each_clip_what_a_call_of_its_own_gives(tiny_components, device,
                                                                positions):
    unet = live_temporal_layers(tiny_components["unet"])
    if positions:  # the embedded model's frame positions: a clip's length shows in them
        add_frame_positions(unet, 8)
    reference, null, joint, embeds = inputs(unet, device)
    seen: list = []
    handle = unet.register_forward_pre_hook(
        lambda module, args: seen.append(layout_in_progress(module)))
    ref_out, joint_out = predict_clips(unet, [(reference, null), (joint, embeds)], 10)
    handle.remove()

    assert seen == [ClipLayout([(1, 3), (2, 4)])]
    torch.testing.assert_close(ref_out, unet(reference, 10, encoder_hidden_states=null).sample,
                               **ROUNDING)
    torch.testing.assert_close(joint_out, unet(joint, 10, encoder_hidden_states=embeds).sample,
                               **ROUNDING)
    # The reference clip computed as 4 frames, as if the groups were not kept apart, differs.
    longer = unet(reference[:, :, :1].expand(-1, -1, 4, -1, -1), 10,
                  encoder_hidden_states=null).sample[:, :, :3]
    assert (longer - ref_out).abs().max() > 1e-3
    # Afterwards the temporal layers are the class's own again and no call is in progress.
    layers = [m for m in unet.modules() if isinstance(m, TEMPORAL_LAYERS)]
    assert {type(m) for m in layers} == {TransformerTemporalModel, TemporalConvLayer}
    assert all("forward" not in vars(m) for m in layers) and layout_in_progress(unet) is None


@torch.no_grad()
def test_the_one_call_step_captures_before_it_composes(tiny_components, device):
    """In one call, each layer takes the reference's queries and keys before it composes the
    joint pass's conditional clip, and the reference's own attention is never composed: the
    reference comes out as a plain pass, the joint pass as capture-then-compose in two calls."""
    unet = live_temporal_layers(tiny_components["unet"])
    reference, null, joint, embeds = inputs(unet, device)
    plain_reference = unet(reference, 10, encoder_hidden_states=null).sample
    plain_joint = unet(joint, 10, encoder_hidden_states=embeds).sample
    settings = CompositionSettings(lambda_=1.0, lambda_rule="weight", lambda_scale=0.5)
    cond_rows = slice(1, 2)

    composition = Composition(unet, settings)
    with composition.capture():
        unet(reference, 10, encoder_hidden_states=null)
    two_calls_captured = dict(composition.captured)
    with composition.compose(step=0, num_frames=4, cond_rows=cond_rows):
        two_calls = unet(joint, 10, encoder_hidden_states=embeds).sample
    composition.remove()

    composition = Composition(unet, settings)
    with composition.in_one_call(step=0, num_frames=4, cond_rows=cond_rows):
        ref_out, joint_out = predict_clips(unet, [(reference, null), (joint, embeds)], 10)
    one_call_captured = dict(composition.captured)
    composition.remove()

    assert one_call_captured.keys() == two_calls_captured.keys() == set(
        composition.composed_layers)
    for path, captured in one_call_captured.items():
        torch.testing.assert_close(captured, two_calls_captured[path], **ROUNDING)
    torch.testing.assert_close(ref_out, plain_reference, **ROUNDING)
    torch.testing.assert_close(joint_out, two_calls, **ROUNDING)
    torch.testing.assert_close(joint_out[:1], plain_joint[:1], **ROUNDING)  # unconditional
    assert (joint_out[1:] - plain_joint[1:]).abs().max() > 1e-3  # composed


def test_one_call_or_two_the_sampler_gives_the_same_frames(tiny_pipe):
    kwargs = dict(num_frames=4, num_inference_steps=6, seeds=[0, 1], tau1=2, tau2=3,
                  lambda_=1.0, lambda_rule="weight", lambda_scale=0.5)
    two = tiny_pipe("a fish", a_sketch(), **kwargs).frames
    tiny_pipe.one_call = True
    one = tiny_pipe("a fish", a_sketch(), **kwargs).frames
    torch.testing.assert_close(one, two, rtol=0, atol=1e-4)
    assert (one - tiny_pipe("a fish", a_sketch(), **{**kwargs, "lambda_": 0.0}).frames
            ).abs().max() > 1e-3


def test_a_composer_without_one_call_steps_gets_a_call_per_pass(tiny_pipe):
    """A plugin's composer written against ``capture``/``compose`` alone keeps working."""

    class TwoCalls:
        def __init__(self, unet, settings) -> None:
            self.inner = compose_attention(unet, settings)
            self.capture, self.compose, self.remove = (
                self.inner.capture, self.inner.compose, self.inner.remove)

    tiny_pipe.one_call = True
    calls, _ = record_unet_calls(tiny_pipe)
    tiny_pipe("a fish", a_sketch(), num_frames=4, num_inference_steps=4, seeds=[0], tau1=0,
              tau2=1, composer=TwoCalls)
    # Composing steps 0, 1: a call each; step 2 advances frame 1's trajectory without
    # composing, in one call; step 3 needs no reference.
    assert calls[4:] == [(1, 4), (2, 4), (1, 3), (2, 4), ((1, 1), (2, 4)), (2, 4)]
    assert supports_one_call(tiny_pipe.unet) and not supports_one_call(torch.nn.Linear(1, 1))
