"""Composition processors against a direct, written-out computation of the paper's C^S / C^T."""

from __future__ import annotations

import pytest
import torch

from flipsketch.sampler.attention import (
    Composition,
    CompositionSettings,
    attention_kind,
)


def find_attention(unet, kind: str):
    for name, module in unet.named_modules():
        if attention_kind(name) == kind:
            return name, module
    raise AssertionError(f"no {kind} attention in the UNet")


def direct_attention(attn, q, k, v, logit_factor=None, weight_factor=None):
    """softmax(q k^T / sqrt(d)) v per head, then the output projection; logits (rows, M, M).

    ``logit_factor`` (M,) multiplies query frame i's logit to frame 1; ``weight_factor`` (M,)
    multiplies its unnormalised weight exp(logit), then the row is renormalised."""
    heads = attn.heads
    rows, tokens, inner = q.shape
    d = inner // heads
    qh = q.view(rows, tokens, heads, d).permute(0, 2, 1, 3)
    kh = k.view(rows, k.shape[1], heads, d).permute(0, 2, 1, 3)
    vh = v.view(rows, v.shape[1], heads, d).permute(0, 2, 1, 3)
    logits = torch.einsum("bhid,bhjd->bhij", qh, kh) / d**0.5
    if logit_factor is not None:
        logits = logits.clone()
        logits[..., :, 0] = logits[..., :, 0] * logit_factor  # query frame i -> frame 1
    weights = logits.softmax(-1)
    if weight_factor is not None:
        weights = weights.clone()
        weights[..., :, 0] = weights[..., :, 0] * weight_factor
        weights = weights / weights.sum(-1, keepdim=True)
    out = torch.einsum("bhij,bhjd->bhid", weights, vh)
    out = out.permute(0, 2, 1, 3).reshape(rows, tokens, inner)
    return attn.to_out[1](attn.to_out[0](out))


def test_layers_are_told_apart_by_their_place_in_the_unet(tiny_components):
    unet = tiny_components["unet"]
    kinds = {name: attention_kind(name) for name, _ in unet.named_modules()}
    spatial = [n for n, k in kinds.items() if k == "spatial"]
    temporal = [n for n, k in kinds.items() if k == "temporal"]
    assert spatial and all(".attentions." in n and n.endswith("attn1") for n in spatial)
    assert "transformer_in.transformer_blocks.0.attn1" in temporal
    assert all(n.endswith("attn1") for n in temporal)
    assert not any(k for n, k in kinds.items() if n.endswith("attn2"))
    assert {n for n in kinds if "temp_attentions" in n and n.endswith("attn1")} <= set(temporal)


@torch.no_grad()
def test_spatial_composition_replaces_the_queries_of_conditional_frames_1_to_n(tiny_components,
                                                                              device):
    unet = tiny_components["unet"]
    composition = Composition(unet, CompositionSettings(lambda_=0.5))
    name, attn = find_attention(unet, "spatial")
    frames, n, hw, channels = 5, 3, 6, attn.to_q.in_features
    torch.manual_seed(1)
    reference = torch.randn(n, hw, channels).to(device)  # reference pass: batch 1, N frames
    joint = torch.randn(2 * frames, hw, channels).to(device)  # [uncond, cond] x M frames
    with composition.capture():
        attn(reference)
    with composition.compose(step=0, num_frames=frames, cond_rows=slice(1, 2)):
        composed = attn(joint)

    q, k, v = attn.to_q(joint), attn.to_k(joint), attn.to_v(joint)
    q[frames:frames + n] = attn.to_q(reference)  # C^S: conditional frames 1..N only
    expected = direct_attention(attn, q, k, v)
    torch.testing.assert_close(composed, expected, rtol=1e-4, atol=1e-5)
    plain = direct_attention(attn, attn.to_q(joint), k, v)
    torch.testing.assert_close(composed[:frames], plain[:frames], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(composed[frames:frames + n], plain[frames:frames + n], atol=1e-4)
    composition.remove()


@pytest.mark.parametrize("lambda_", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("frame_index_base", [1, 0])  # the toolkit's 1..M, the authors' 0..M-1
@pytest.mark.parametrize("rule", ["logit", "weight"])
@pytest.mark.parametrize("scale", [0.02, 1.0])  # eq. 9's 1/50, a model's own
@torch.no_grad()
def test_temporal_composition_swaps_frame_1_key_and_scales_its_attention(
        tiny_components, lambda_, frame_index_base, rule, scale, device):
    unet = tiny_components["unet"]
    composition = Composition(unet, CompositionSettings(
        lambda_=lambda_, frame_index_base=frame_index_base, lambda_rule=rule,
        lambda_scale=scale))
    name, attn = find_attention(unet, "temporal")
    frames, pixels, channels = 6, 4, attn.to_q.in_features
    torch.manual_seed(2)
    reference = torch.randn(pixels, 4, channels).to(device)  # reference pass: hw rows, N = 4
    joint = torch.randn(2 * pixels, frames, channels).to(device) * 3  # [uncond, cond] x hw
    with composition.capture():
        attn(reference)
    with composition.compose(step=3, num_frames=frames, cond_rows=slice(1, 2)):
        composed = attn(joint)

    q, k, v = attn.to_q(joint), attn.to_k(joint), attn.to_v(joint)
    k[pixels:, 0] = attn.to_k(reference)[:, 0]  # C^T: reference key at frame 1
    numbers = torch.arange(frame_index_base, frame_index_base + frames, dtype=torch.float32,
                           device=device)  # query frame i's number, frame 1 first
    factor = 1 + lambda_ * numbers * scale
    expected_cond = direct_attention(attn, q[pixels:], k[pixels:], v[pixels:],
                                     **{f"{rule}_factor": factor})
    expected_uncond = direct_attention(attn, q[:pixels], k[:pixels], v[:pixels])
    torch.testing.assert_close(composed[pixels:], expected_cond, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(composed[:pixels], expected_uncond, rtol=1e-4, atol=1e-5)
    composition.remove()


def test_the_weight_rule_raises_attention_to_frame_1_whatever_the_logits_sign():
    """Eq. 9 scales the logit, so a negative logit falls as lambda grows (attention to frame 1
    drops); the weight rule scales exp(logit), so attention to frame 1 rises in every row."""
    from flipsketch.sampler.attention import scaled_temporal_attention

    frames, d = 6, 8
    torch.manual_seed(5)
    q = torch.randn(64, frames, d)
    k = torch.randn(64, frames, d)
    v = torch.zeros(64, frames, d)
    v[:, 0] = 1.0  # the output is then the attention weight on frame 1
    logit_to_1 = (q @ k[:, :1].transpose(1, 2)).squeeze(-1)  # (rows, M)
    assert (logit_to_1 < 0).any() and (logit_to_1 > 0).any()

    def attention_to_1(lambda_, rule):
        return scaled_temporal_attention(1, q, k, v, lambda_, rule=rule)[..., 0]  # (rows, M)

    for rule in ("logit", "weight"):
        torch.testing.assert_close(attention_to_1(0.0, rule),
                                   scaled_temporal_attention(1, q, k, v, 0.0)[..., 0])
    logit_rise = attention_to_1(1.0, "logit") - attention_to_1(0.0, "logit")
    weight_rise = attention_to_1(1.0, "weight") - attention_to_1(0.0, "weight")
    assert (weight_rise > 0).all()
    assert ((logit_rise < 0) == (logit_to_1 < 0)).all() and (logit_rise < 0).any()


@torch.no_grad()
def test_lambda_changes_attention_to_frame_1(tiny_components, device):
    """Higher lambda pulls more attention mass onto frame 1 when its logits are positive."""
    unet = tiny_components["unet"]
    name, attn = find_attention(unet, "temporal")
    outputs = []
    for lambda_ in (0.0, 5.0):
        composition = Composition(unet, CompositionSettings(lambda_=lambda_))
        torch.manual_seed(3)
        reference = torch.randn(4, 3, attn.to_q.in_features).to(device)
        joint = torch.randn(4, 5, attn.to_q.in_features).to(device)
        with composition.capture():
            attn(reference)
        with composition.compose(step=0, num_frames=5, cond_rows=slice(0, 1)):
            outputs.append(attn(joint))
        composition.remove()
    assert not torch.allclose(outputs[0], outputs[1])


@torch.no_grad()
def test_composition_acts_on_the_conditional_branch_only_end_to_end(tiny_components, device):
    """A whole UNet call: the unconditional half equals a plain call, the conditional differs."""
    unet = tiny_components["unet"].eval()
    torch.manual_seed(4)
    frames = 4
    x = torch.randn(1, 4, frames, 8, 8).to(device)
    reference = torch.randn(1, 4, 1, 8, 8).to(device)
    embeds = torch.randn(1, 7, unet.config.cross_attention_dim).to(device)
    plain = unet(x, 10, encoder_hidden_states=embeds).sample

    composition = Composition(unet, CompositionSettings(lambda_=1.0))
    with composition.capture():
        unet(reference.expand(-1, -1, 3, -1, -1), 10, encoder_hidden_states=embeds)
    with composition.compose(step=0, num_frames=frames, cond_rows=slice(1, 2)):
        both = unet(torch.cat([x, x]), 10, encoder_hidden_states=torch.cat([embeds, embeds]))
    composition.remove()
    torch.testing.assert_close(both.sample[:1], plain, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(both.sample[1:], plain, atol=1e-4)
    # remove() restores the original processors.
    torch.testing.assert_close(unet(x, 10, encoder_hidden_states=embeds).sample, plain)


def test_spatial_and_temporal_can_be_chosen_separately(tiny_components):
    unet = tiny_components["unet"]
    only_spatial = Composition(unet, CompositionSettings(temporal=False))
    kinds = {attention_kind(path) for path in only_spatial.composed_layers}
    only_spatial.remove()
    assert kinds == {"spatial"}
    only_temporal = Composition(unet, CompositionSettings(spatial=False))
    kinds = {attention_kind(path) for path in only_temporal.composed_layers}
    only_temporal.remove()
    assert kinds == {"temporal"}
