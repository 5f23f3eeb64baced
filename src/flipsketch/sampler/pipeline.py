"""FlipSketchPipeline: Algorithm 1 of the paper, top to bottom.

    1. encode the prompts (input, negative, null)
    2. encode and invert the sketch -> reference noise x_T^r          (inversion.py)
    3. start noise: frame 1 = x_T^r, frames 2..M ~ N(0, I) per seed
    4. for each DDIM step i, timestep t:
       a. if i < tau_1: align frames 2..M to the reference            (alignment.py)
       b. reference pass eps([x_t^r]^N, t, P_null), N = max(1, M - i),
          capturing attention queries/keys                            (attention.py)
       c. joint guided pass; its conditional half composed with the
          reference's queries/keys while i <= tau_2; b and c can share
          one UNet call (``one_call``)                                (clips.py)
       d. DDIM step of the joint latents and of the reference latent
    5. decode the frames with the VAE

Frame 1 is set to the reference latent before every step while the reference lives: during
alignment and composition (the paper), or to the end with ``keep_first_frame`` (the default
of the toolkit), where the remaining steps cost one extra one-frame pass each.

Without a sketch the same loop is plain text-to-video sampling (the paper's "T2V LoRA"
baseline). Every stage implementation is passed in, so plugins can replace any of them; the
defaults are this package's own.

No pass is wasted: the reference pass runs unguided (both of its branches would be the null
prompt), only while the reference is still needed, and the unconditional and conditional
joint passes share one batched UNet call (the reference pass can join it: ``one_call``).
Alignment (a) comes first because its target is the reference alone, a pass of its own; the
paper's order (reference pass, then alignment) computes the same, since alignment moves frames
2..M only and the reference pass never sees them.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet3DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from flipsketch.errors import FlipSketchWarning
from flipsketch.plugins import (
    COMPOSE_MODES,
    AlignSettings,
    CompositionSettings,
    SketchEncoding,
    method_windows,
    sketch_encoding,
)
from flipsketch.sampler.alignment import gradient_align
from flipsketch.sampler.attention import (
    compose_attention,
    model_lambda_rule,
    model_lambda_scale,
)
from flipsketch.sampler.clips import predict_clips, supports_one_call
from flipsketch.sampler.inversion import ddim_invert
from flipsketch.sampler.latents import decode_latents, encode_frames
from flipsketch.settings import TOOLKIT_SAMPLER, SamplerSettings

# The sampler's defaults are the settings' (one place: flipsketch.settings).
SAMPLER = SamplerSettings()

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the block's wall seconds to ``timings[name]``: where a run's time goes
    (``benchmarks/bench_animate.py --profile``). Host time: on a GPU a block's kernels may
    finish inside the next block, so only the sum up to the decode is exact there."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started


def frame_one_pinned_steps(steps: int, tau1: int, tau2: int, keep_first_frame: bool) -> int:
    """For how many steps frame 1 is set to the sketch's reference trajectory.

    Every step with ``keep_first_frame`` (frame 1 is the user's drawing); otherwise the
    method's windows, alignment (i < tau1) and composition (i <= tau2), and at least step 0,
    where frame 1 receives x_T^r: a sketch always seeds frame 1.
    """
    return steps if keep_first_frame else min(steps, max(1, tau1, tau2 + 1))


@dataclass
class FlipSketchOutput:
    frames: torch.Tensor  # (K, M, H, W) float in [0, 1], 1 = paper white
    seeds: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    # Per aligned step: floats; with output_type="latent" what the aligner returned (tensors).
    align_losses: list = field(default_factory=list)


class FlipSketchPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet->vae"
    # True: the reference pass and the joint pass of a step in one UNet call where the UNet
    # and the composer allow it (``clips.py``). Off by default: on 2 CPU cores it did not
    # clearly win (0.88-1.05x, README, Benchmarks); on CUDA, where a call's fixed cost is
    # kernel launches, ``scripts/gpu_check.sh`` measures it (full vs full-one-call).
    one_call: bool = False

    def __init__(self, vae: AutoencoderKL, text_encoder: CLIPTextModel,
                 tokenizer: CLIPTokenizer, unet: UNet3DConditionModel,
                 scheduler: DDIMScheduler) -> None:
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              unet=unet, scheduler=scheduler)

    @property
    def model_resolution(self) -> int:
        """Pixel size the model was trained at: latent size times the VAE's down-sampling."""
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return self.unet.config.sample_size * factor

    # -- building blocks ------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """(len(prompts), tokens, d) text embeddings (last hidden state, as ModelScope).

        The text encoder reads a fixed number of tokens (77 for CLIP); a longer prompt is cut
        there, with a ``FlipSketchWarning`` so that the user knows which words were ignored.
        """
        max_length = min(self.tokenizer.model_max_length,
                         self.text_encoder.config.max_position_embeddings)
        # One token over the limit is enough to tell; truncating keeps the tokenizer's own
        # "sequence too long" log line away.
        lengths = self.tokenizer(list(prompts), truncation=True, max_length=max_length + 1,
                                 return_length=True)["length"]
        for prompt, length in zip(prompts, lengths, strict=True):
            if length > max_length:
                start = prompt if len(prompt) <= 24 else f"{prompt[:24]}..."
                # Worded for any of them: the negative prompt is encoded here too.
                warnings.warn(f"'{start}' is longer than the {max_length} tokens the text "
                              "encoder reads; the rest was ignored (shorten it)",
                              FlipSketchWarning, stacklevel=2)
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0]

    def predict(self, latents: torch.Tensor, t, embeds: torch.Tensor) -> torch.Tensor:
        """One UNet call: (b, c, f, h, w) latents at timestep t -> model output, same shape."""
        out = self.unet(latents.to(self.unet.dtype), t,
                        encoder_hidden_states=embeds.to(self.unet.dtype)).sample
        return out.float()

    def reference_and_joint(self, t, reference: torch.Tensor | None, null: torch.Tensor,
                            joint: torch.Tensor, joint_embeds: torch.Tensor,
                            composition=None, step: int = 0, cond_rows: slice = slice(0)
                            ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The reference pass on ``reference`` (1, c, N, h, w) under ``null``, if any, and the
        joint pass on ``joint`` (b, c, M, h, w); with ``composition`` the first captures and the
        second composes. Returns the reference's frame 1 output (1, c, 1, h, w) or None, and
        the joint output. With ``one_call``, one UNet call (``predict_clips``) where the UNet
        and the composer support it: the same numbers as two calls, up to float rounding."""
        clips = [(joint, joint_embeds)] if reference is None else \
            [(reference, null), (joint, joint_embeds)]
        one_call = (self.one_call and len(clips) == 2 and supports_one_call(self.unet)
                    and (composition is None or hasattr(composition, "in_one_call")))
        if one_call:
            with composition.in_one_call(step, joint.shape[2], cond_rows) if composition \
                    else nullcontext():
                ref_out, out = predict_clips(self.unet, clips, t)
            return ref_out[:, :, :1], out
        ref_out = None
        if reference is not None:
            with composition.capture() if composition else nullcontext():
                ref_out = self.predict(reference, t, null)[:, :, :1]
        with composition.compose(step, joint.shape[2], cond_rows) if composition \
                else nullcontext():
            out = self.predict(joint, t, joint_embeds)
        return ref_out, out

    @torch.no_grad()
    def encode_sketch(self, sketch: torch.Tensor,
                      encoding: SketchEncoding | None = None) -> torch.Tensor:
        """(H, W) grey sketch in [0, 1] at model resolution -> (1, c, F, h, w) latent, F =
        ``encoding.copies`` (1 by default), encoded as ``encoding`` says (the inverter's)."""
        encoding = encoding or SketchEncoding()
        # Samples differ copy by copy; the mode is one latent, encoded once and repeated.
        encoded = encoding.copies if encoding.sample else 1
        # A host generator: diffusers draws on the host and moves the sample, so the latent is
        # the same on every device.
        generator = torch.Generator().manual_seed(encoding.sample_seed) \
            if encoding.sample else None
        latent = encode_frames(self.vae, sketch[None].expand(encoded, -1, -1),
                               sample=encoding.sample, generator=generator,
                               unit_range=encoding.unit_range)  # (encoded, c, h, w)
        latent = latent.float().transpose(0, 1)[None]  # (1, c, encoded, h, w)
        return latent.expand(-1, -1, encoding.copies, -1, -1)  # (1, c, F, h, w)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        """(b, c, M, h, w) latents -> (b, M, H, W) frames in [0, 1]."""
        b, c, m, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(b * m, c, h, w)  # (b*M, c, h, w)
        frames = torch.cat([decode_latents(self.vae, x) for x in flat.split(chunk)])
        return frames.reshape(b, m, *frames.shape[1:]).float().cpu()

    # -- Algorithm 1 ------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        sketch: torch.Tensor | None = None,
        *,
        num_frames: int = SAMPLER.num_frames,
        num_inference_steps: int = SAMPLER.num_inference_steps,
        guidance_scale: float = SAMPLER.guidance_scale,
        negative_prompt: str = SAMPLER.negative_prompt,
        seeds: Sequence[int] = (SAMPLER.seed,),
        tau1: int | None = SAMPLER.tau1,
        tau2: int | None = SAMPLER.tau2,
        lambda_: float = SAMPLER.lambda_,
        compose: str = SAMPLER.compose,
        keep_first_frame: bool = TOOLKIT_SAMPLER.keep_first_frame,
        frame_index_base: int = TOOLKIT_SAMPLER.frame_index_base,
        lambda_rule: str | None = TOOLKIT_SAMPLER.lambda_rule,
        lambda_scale: float | None = SAMPLER.lambda_scale,
        inverter: Callable | None = ddim_invert,
        aligner: Callable | None = gradient_align,
        align_settings: AlignSettings | None = None,
        composer: Callable | None = compose_attention,
        progress: Progress | None = None,
        output_type: str = "frames",
    ) -> FlipSketchOutput:
        """Animate ``sketch`` ((H, W) grey in [0, 1], model resolution) as ``prompt`` says.

        ``seeds`` gives one sample per seed, sampled together; a sample depends only on its
        own seed, up to float rounding (the batch's shape changes the order of the kernels'
        sums: a few 1e-6 apart from the sample drawn alone). ``tau1``/``tau2`` default to
        2T/5 and 3T/5: alignment runs for steps i < tau1, composition for i <= tau2.
        ``compose`` is "both", "spatial", "temporal" or "none"; ``aligner``/``composer`` None
        switch their stage off. ``frame_index_base`` numbers frame 1 in the temporal logit
        scale (``CompositionSettings``): 1 the toolkit, 0 the authors' code; ``lambda_rule``
        says whether the scale multiplies the logit ("logit", eq. 9) or the attention weight
        ("weight"), and ``lambda_scale`` is s in its factor 1 + lambda * i * s; None for
        either: the UNet's own (``model_lambda_rule``, ``model_lambda_scale``), eq. 9's for a
        UNet that records none.

        Frame 1, with a sketch: it starts from the sketch's inverted noise x_T^r, always, and
        is set to the reference trajectory (x_T^r denoised with the null prompt) at the start
        of every step i < ``frame_one_pinned_steps(...)``: all steps with
        ``keep_first_frame``; otherwise (the paper) while the method's windows are open,
        i < max(1, tau1, tau2 + 1), whether or not alignment and composition run in them, so
        an ablation row differs from the full run only in the stage it switches off. With
        every stage off, ``tau1=0, tau2=-1`` and ``keep_first_frame=False`` this is the
        paper's naive baseline [x_T^r, f_T] (Sec. 4.1): frame 1 pinned at the start only.

        ``output_type="latent"`` skips decoding and every copy to the host: ``frames`` are the
        final latents (b, c, M, h, w) and the alignment losses stay tensors, all on the
        model's device (for chaining, and for running the sampler on ``meta`` to prove that it
        never mixes devices).
        """
        report = progress or (lambda stage, done, total: None)
        timings: dict[str, float] = {}
        device = self.unet.device
        steps, frames, batch = num_inference_steps, num_frames, len(seeds)
        tau1, tau2 = method_windows(steps, tau1, tau2)
        if output_type not in ("frames", "latent"):
            raise ValueError(f"output_type must be 'frames' or 'latent', not {output_type!r}")
        if compose not in COMPOSE_MODES:
            raise ValueError(f"compose must be one of {COMPOSE_MODES}, not {compose!r}")
        if sketch is None:  # text only: no reference, so nothing to align or compose with
            inverter = aligner = composer = None
        if compose == "none":
            composer = None
        align_settings = align_settings or AlignSettings()
        use_cfg = guidance_scale > 1.0

        # 1. Prompts. Conditional rows come after unconditional ones in the joint batch.
        with timed(timings, "prompts_s"):
            cond, uncond, null = self.encode_prompt([prompt, negative_prompt, ""]).split(1)
        cond_embeds = cond.expand(batch, -1, -1)
        joint_embeds = torch.cat([uncond.expand(batch, -1, -1), cond_embeds]) if use_cfg \
            else cond_embeds
        cond_rows = slice(batch, 2 * batch) if use_cfg else slice(0, batch)
        # Timesteps stay on the host with the scheduler's tables: they are loop counters, read
        # with .tolist() by the inversion and moved by the UNet itself.
        self.scheduler.set_timesteps(steps)
        timesteps = self.scheduler.timesteps

        # 2. Reference noise x_T^r by inverting the sketch with the null prompt.
        ref_latent = None
        if sketch is not None:
            report("inversion", 0, 1)
            with timed(timings, "inversion_s"):
                # (1, c, F, h, w): F copies of the drawing where the inverter asks for several
                latent = self.encode_sketch(sketch.to(device), sketch_encoding(inverter))
                ref_latent = inverter(self, latent, null, timesteps).mean(dim=2, keepdim=True)
            report("inversion", 1, 1)

        # 3. Start noise, one generator per seed so a sample does not depend on its batch.
        c, size = self.unet.config.in_channels, self.unet.config.sample_size
        latents = torch.stack([
            torch.randn((c, frames, size, size), generator=torch.Generator().manual_seed(s))
            for s in seeds
        ]).to(device)  # (b, c, M, h, w)

        # Frame 1 follows the reference trajectory (x_T^r denoised with the null prompt) for
        # steps i < pin_until: the one rule, the same whichever stages run (see the docstring).
        pin_until = frame_one_pinned_steps(steps, tau1, tau2, keep_first_frame) \
            if ref_latent is not None else 0
        composition = None
        if composer is not None:
            composition = composer(self.unet, CompositionSettings.for_mode(
                compose, lambda_, frame_index_base,
                model_lambda_rule(self.unet) if lambda_rule is None else lambda_rule,
                model_lambda_scale(self.unet) if lambda_scale is None else lambda_scale))

        # 4. Denoising loop.
        align_losses: list[list[float]] = []
        started = time.perf_counter()
        try:
            for i, t in enumerate(timesteps):
                reference_live = i < pin_until
                composing = composition is not None and i <= tau2
                aligning = aligner is not None and reference_live and i < tau1
                advancing = i + 1 < pin_until  # the reference latent is needed next step
                if reference_live:
                    latents[:, :, :1] = ref_latent
                # The reference pass, unguided: N copies while composing, else just one;
                # none on a last kept step that neither composes, aligns nor advances.
                n = max(1, frames - i) if composing else 1
                reference = ref_latent.expand(-1, -1, n, -1, -1) \
                    if reference_live and (composing or aligning or advancing) else None
                ref_out = None

                # a. Frame alignment towards the reference alone, under the null prompt: a pass
                #    of its own, which at N = 1 is the step's reference pass too.
                if aligning:
                    with timed(timings, "alignment_s"):
                        with composition.capture() if composing and n == 1 else nullcontext():
                            target = self.predict(ref_latent, t, null)  # (1, c, 1, h, w)
                        if n == 1:
                            ref_out, reference = target, None
                        latents, losses = aligner(self, latents, ref_latent, t, cond_embeds,
                                                  target, align_settings)
                    align_losses.append(losses)

                # b + c. Reference pass and joint pass (unconditional and conditional rows
                #    batched).
                model_in = torch.cat([latents, latents]) if use_cfg else latents
                with timed(timings, "passes_s"):
                    ref_first, out = self.reference_and_joint(
                        t, reference, null, model_in, joint_embeds,
                        composition if composing else None, i, cond_rows)
                ref_out = ref_out if ref_first is None else ref_first
                if use_cfg:
                    out_uncond, out_cond = out.chunk(2)
                    out = out_uncond + guidance_scale * (out_cond - out_uncond)

                # d. DDIM steps.
                latents = self.scheduler.step(out, t, latents).prev_sample
                if reference_live and advancing:
                    ref_latent = self.scheduler.step(ref_out, t, ref_latent).prev_sample
                report("sampling", i + 1, steps)
        finally:
            if composition is not None:
                composition.remove()
        timings["sampling_s"] = time.perf_counter() - started

        if output_type == "latent":
            return FlipSketchOutput(frames=latents, seeds=list(seeds), timings=timings,
                                    align_losses=align_losses)

        # 5. Decode.
        with timed(timings, "decode_s"):
            video = self.decode(latents)
        return FlipSketchOutput(frames=video, seeds=list(seeds), timings=timings,
                                align_losses=[torch.as_tensor(x).tolist() for x in align_losses])
