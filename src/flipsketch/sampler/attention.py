"""Attention composition (paper Sec. 4.3): the reference pass steers the joint pass.

Two attention processors are swapped into the UNet's self-attention layers (``attn1``):

- ``SpatialCompositionProcessor`` (C^S) on spatial attention, tokens = H_s*W_s, batch = frames:
  in the conditional branch the queries of frames 1..N become the reference pass's queries.
- ``TemporalCompositionProcessor`` (C^T) on temporal attention, tokens = frames, batch =
  pixels: in the conditional branch frame 1's key becomes the reference key, and the logit of
  every query frame i towards frame 1 is multiplied by (1 + lambda * i * s) before the
  softmax (paper eq. 9 scales k^r by 1 + lambda * 2e-2): s = 1/50 (``PAPER_LAMBDA_SCALE``)
  unless the UNet's config records its own (``model_lambda_scale``). The toolkit numbers the
  frames 1..M, so eq. 9's factor is frame 1's; the authors' code numbers them 0..M-1, so frame 1 is
  unscaled and eq. 9's factor is frame 2's (``CompositionSettings.frame_index_base``).
  Scaling a logit only raises the attention where the logit is positive; the "weight" rule
  (``CompositionSettings.lambda_rule``) scales the attention weight instead, by adding
  log(factor) to the logit, so a larger lambda always means more attention to frame 1. Which
  rule runs is, like s, the model's own where its config records one (``model_lambda_rule``).

Which layer is spatial or temporal is read from the module's place in the UNet, never from
tensor shapes (a shape test breaks when H_s*W_s happens to equal the frame count).

The processors share one ``Composition`` object that says what the current UNet call is:
``capture`` (the reference pass; store q or k), ``compose`` (the joint pass; use them),
``in_one_call`` (both passes in one call, ``clips.predict_clips``: each layer captures from the
reference's frames before it composes the joint pass's) or none (any other pass: plain fused
attention). Everything runs through
``scaled_dot_product_attention`` (the "weight" rule is an additive mask) except the
conditional rows of a temporally composed layer under the "logit" rule, which build their
(frames x frames) logits explicitly: a multiplicative logit scale is not an additive mask.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from flipsketch.plugins import (
    LAMBDA_RULE_KEY,
    LAMBDA_RULES,
    LAMBDA_SCALE_KEY,
    PAPER_LAMBDA_SCALE,
    CompositionSettings,
)
from flipsketch.sampler.clips import layout_in_progress

# The groups of clips of a one-call step (``Composition.in_one_call``).
REFERENCE, JOINT = 0, 1

SPATIAL_SELF_ATTENTION = re.compile(r"(^|\.)attentions\.\d+\.transformer_blocks\.\d+\.attn1$")
# Temporal transformers: ``transformer_in`` and ``temp_attentions`` of UNet3DConditionModel
# (ModelScope), ``motion_modules`` of UNetMotionModel (AnimateDiff). Both lay their tokens out
# alike, (batch*h*w, frames, channels), and both have a second temporal self-attention (attn2,
# ``double_self_attention``); the method steers the first, attn1, as for spatial blocks.
TEMPORAL_SELF_ATTENTION = re.compile(
    r"(^transformer_in|(^|\.)(temp_attentions|motion_modules)\.\d+)"
    r"\.transformer_blocks\.\d+\.attn1$"
)


def attention_kind(module_path: str) -> str | None:
    """"spatial", "temporal" or None for an attention module path of a video UNet
    (``UNet3DConditionModel`` or ``UNetMotionModel``)."""
    if SPATIAL_SELF_ATTENTION.search(module_path):
        return "spatial"
    if TEMPORAL_SELF_ATTENTION.search(module_path):
        return "temporal"
    return None


def temporal_logit_scale(num_frames: int, lambda_: float, device=None,
                         frame_index_base: int = 1,
                         lambda_scale: float = PAPER_LAMBDA_SCALE) -> torch.Tensor:
    """(M,) factor applied to each query frame's logit towards frame 1: 1 + lambda * i * s
    (s = 1/50 in eq. 9), i = frame_index_base for frame 1 and one more for each next frame
    (1..M in the toolkit, 0..M-1 in the authors' code)."""
    frame_number = torch.arange(frame_index_base, frame_index_base + num_frames, device=device,
                                dtype=torch.float32)
    return 1 + lambda_ * lambda_scale * frame_number


def model_lambda_scale(unet) -> float:
    """The scale s of eq. 9's factor 1 + lambda * i * s that ``unet`` was calibrated with (its
    config's ``lambda_scale``), else the paper's 1/50.

    A factor on a logit does as much as the logit is large: ModelScope's temporal logits are
    large, the embedded model's about 1 in size, so there 1 + lambda * i / 50 (at most 1.2)
    barely moves the attention and lambda 0 and 1 give the same clip. The calibrated constant
    gives lambda its range back on such a model (docs/witness.md measures it)."""
    value = unet.config.get(LAMBDA_SCALE_KEY)
    return PAPER_LAMBDA_SCALE if value is None else float(value)


def model_lambda_rule(unet) -> str:
    """The rule (``LAMBDA_RULES``) that ``unet`` was calibrated with (its config's
    ``lambda_rule``), else eq. 9's "logit".

    On a model whose logits towards frame 1 are small and of either sign, scaling the logit
    barely moves the attention, and a factor large enough to matter freezes the clip at lambda
    1 before it keeps the drawing at lambda 0.5; scaling the weight keeps more per pixel of
    motion given up (docs/witness.md, the calibration)."""
    rule = unet.config.get(LAMBDA_RULE_KEY) or LAMBDA_RULES[0]
    if rule not in LAMBDA_RULES:
        raise ValueError(f"the UNet's config.json has {LAMBDA_RULE_KEY} {rule!r}; it must be "
                         f"one of {', '.join(LAMBDA_RULES)} (fix or remove the key)")
    return rule


class Composition:
    """Installed processors plus the state of the UNet call in progress: the built-in
    ``flipsketch.plugins.Composition``."""

    def __init__(self, unet, settings: CompositionSettings) -> None:
        self.unet = unet
        self.settings = settings
        self.mode: str | None = None  # None | "capture" | "compose" | "one call"
        self.num_frames = 0  # frames per batch entry in the joint pass
        self.cond_rows = slice(0, 0)  # which batch entries of the joint pass are conditional
        self.captured: dict[str, torch.Tensor] = {}
        self._original = dict(unet.attn_processors)
        processors = {}
        for name, original in self._original.items():
            path = name.removesuffix(".processor")
            kind = attention_kind(path)
            if kind == "spatial" and settings.spatial:
                processors[name] = SpatialCompositionProcessor(self, path)
            elif kind == "temporal" and settings.temporal:
                processors[name] = TemporalCompositionProcessor(self, path)
            else:
                processors[name] = original
        self.composed_layers = {
            n.removesuffix(".processor"): type(p).__name__
            for n, p in processors.items() if isinstance(p, _SelfAttentionProcessor)
        }
        unet.set_attn_processor(processors)

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Wrap the reference pass eps([x_t^r]^N, t, P_null): record its queries and keys."""
        self.captured.clear()
        self.mode = "capture"
        try:
            yield
        finally:
            self.mode = None

    @contextmanager
    def compose(self, step: int, num_frames: int, cond_rows: slice) -> Iterator[None]:
        """Wrap the joint pass of step ``step``; ``cond_rows`` are its conditional entries.

        The built-in composition acts the same at every step up to tau2 (the sampler decides
        which steps compose), so ``step`` is part of the protocol for composers that schedule
        by step and is not kept here."""
        self.mode = "compose"
        self.num_frames, self.cond_rows = num_frames, cond_rows
        try:
            yield
        finally:
            self.mode = None

    @contextmanager
    def in_one_call(self, step: int, num_frames: int, cond_rows: slice) -> Iterator[None]:
        """Wrap one ``predict_clips`` call of step ``step`` whose first group of clips is the
        reference pass and second the joint pass (as ``compose`` says). Every layer captures
        from the reference before it composes the joint pass, and the reference's own
        attention stays plain: the same as ``capture`` on one call and ``compose`` on the
        next."""
        self.captured.clear()
        self.mode = "one call"
        self.num_frames, self.cond_rows = num_frames, cond_rows
        try:
            yield
        finally:
            self.mode = None

    def call_mode(self) -> str | None:
        """What the attention call in progress does with q and k: "capture", "compose",
        "capture and compose" (a spatial layer of a one-call step sees the frames of both
        passes at once) or None (plain attention)."""
        if self.mode != "one call":
            return self.mode
        active = layout_in_progress(self.unet).active  # the group a temporal layer computes
        return {None: "capture and compose", REFERENCE: "capture", JOINT: "compose"}[active]

    def remove(self) -> None:
        """Put the UNet's original processors back."""
        self.unet.set_attn_processor(self._original)
        self.captured.clear()


class _SelfAttentionProcessor:
    """diffusers' fused self-attention, split into project / attend / output steps."""

    def __init__(self, composition: Composition, path: str) -> None:
        self.composition = composition
        self.path = path

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, *args, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError(f"{self.path}: composition expects plain self-attention")
        residual = hidden_states
        query, key, value = (attn.to_q(hidden_states), attn.to_k(hidden_states),
                             attn.to_v(hidden_states))  # each (batch, tokens, inner)
        mode = self.composition.call_mode()
        if mode == "capture":
            self.capture(query, key)
        elif mode == "compose":
            query, key = self.compose(query, key)
        elif mode == "capture and compose":
            query, key = self.capture_and_compose(query, key)
        out = self.attend(attn, query, key, value)  # (batch, tokens, inner)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def capture(self, query: torch.Tensor, key: torch.Tensor) -> None:
        raise NotImplementedError

    def compose(self, query, key) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def capture_and_compose(self, query, key) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{self.path}: a layer that mixes frames sees one group")

    def attend(self, attn, query, key, value) -> torch.Tensor:
        return fused_attention(attn.heads, query, key, value)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, tokens, heads*d) -> (batch, heads, tokens, d)."""
    batch, tokens, inner = x.shape
    return x.view(batch, tokens, heads, inner // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, tokens, d) -> (batch, tokens, heads*d)."""
    batch, heads, tokens, d = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * d)


def fused_attention(heads: int, query, key, value) -> torch.Tensor:
    q, k, v = (split_heads(x, heads) for x in (query, key, value))
    return merge_heads(F.scaled_dot_product_attention(q, k, v))


class SpatialCompositionProcessor(_SelfAttentionProcessor):
    """C^S: conditional frames 1..N take the reference pass's queries."""

    def capture(self, query, key) -> None:
        self.composition.captured[self.path] = query  # (N, hw, inner): batch 1, N frames

    def compose(self, query, key):
        ref_query = self.composition.captured[self.path]  # (N, hw, inner)
        n = ref_query.shape[0]
        frames = self.composition.num_frames
        query = query.view(-1, frames, *query.shape[1:]).clone()  # (b, M, hw, inner)
        query[self.composition.cond_rows, :n] = ref_query.to(query.dtype)
        return query.flatten(0, 1), key  # (b*M, hw, inner)

    def capture_and_compose(self, query, key):
        # (frames of every group, hw, inner): the reference's frames, then the joint pass's.
        layout = layout_in_progress(self.composition.unet)
        reference, joint = layout.rows(REFERENCE), layout.rows(JOINT)
        self.capture(query[reference], key[reference])
        query = query.clone()
        query[joint] = self.compose(query[joint], key[joint])[0]
        return query, key


class TemporalCompositionProcessor(_SelfAttentionProcessor):
    """C^T: conditional rows see the reference key at frame 1, its logits scaled by lambda."""

    def capture(self, query, key) -> None:
        self.composition.captured[self.path] = key[:, 0]  # (hw, inner): frame 1's key

    def compose(self, query, key):
        ref_key = self.composition.captured[self.path]  # (hw, inner)
        pixels = ref_key.shape[0]
        key = key.view(-1, pixels, *key.shape[1:]).clone()  # (b, hw, M, inner)
        key[self.composition.cond_rows, :, 0] = ref_key.to(key.dtype)
        return query, key.flatten(0, 1)  # (b*hw, M, inner)

    def attend(self, attn, query, key, value):
        if self.composition.call_mode() != "compose":
            return super().attend(attn, query, key, value)
        pixels = self.composition.captured[self.path].shape[0]
        rows = self.composition.cond_rows
        # Conditional entries of the batch, as a range of (b*hw) rows.
        cond = slice(rows.start * pixels, rows.stop * pixels)
        out = fused_attention(attn.heads, query, key, value)  # (b*hw, M, inner)
        settings = self.composition.settings
        out[cond] = scaled_temporal_attention(
            attn.heads, query[cond], key[cond], value[cond], settings.lambda_,
            settings.frame_index_base, settings.lambda_rule, settings.lambda_scale,
        )
        return out


def scaled_temporal_attention(heads: int, query, key, value, lambda_: float,
                              frame_index_base: int = 1, rule: str = "logit",
                              lambda_scale: float = PAPER_LAMBDA_SCALE) -> torch.Tensor:
    """Softmax attention over frames with each query frame's attention to frame 1 scaled by
    ``temporal_logit_scale``: its logit ("logit", eq. 9) or its weight ("weight").

    query/key/value: (rows, M, heads*d) -> (rows, M, heads*d).
    """
    q, k, v = (split_heads(x, heads) for x in (query, key, value))  # (rows, heads, M, d)
    scale = temporal_logit_scale(q.shape[2], lambda_, q.device, frame_index_base,
                                 lambda_scale)  # (M,)
    if rule == "weight":
        # exp(logit + log s) = s * exp(logit): frame 1's weight times s, then renormalised.
        bias = torch.zeros(q.shape[2], q.shape[2], device=q.device, dtype=q.dtype)  # (M, M)
        bias[:, 0] = scale.log().to(q.dtype)
        return merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
    if rule != "logit":
        raise ValueError(f"lambda rule must be one of {LAMBDA_RULES}, not {rule!r}")
    logits = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (rows, heads, M, M)
    logits = torch.cat([logits[..., :1] * scale.to(logits.dtype)[:, None], logits[..., 1:]],
                       dim=-1)
    return merge_heads(logits.softmax(dim=-1) @ v)


def compose_attention(unet, settings: CompositionSettings) -> Composition:
    """The ``flipsketch`` composer: install both processors on ``unet``."""
    return Composition(unet, settings)
