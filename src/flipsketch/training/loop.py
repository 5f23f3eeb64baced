"""The one denoising-loss training loop, shared by the tiny base model and LoRA fine-tuning.

``train_denoiser`` trains whatever parameters of the UNet and text encoder have
``requires_grad`` (all of them for the base model, only LoRA adapters for a fine-tune) on any
dataset whose items are ``dict(frames=(F, H, W) float in [0, 1], caption=str)``. Base training
and LoRA fine-tuning differ only in which parameters train, which dataset feeds the loop and
what the caller exports; the loss, the schedule, checkpoints and resume are shared.

The loss is the model's own (``training.noise``, which evaluation scores with too): noise is
added with ``scheduler.add_noise`` at timesteps drawn over the training steps and the target
comes from ``schedule.training_target``, so a v-prediction model learns velocity and an epsilon
model (ModelScope) learns noise. Captions are dropped (replaced by "") with probability
``caption_dropout`` so that classifier-free guidance has an unconditional model to push against.

Checkpoints (``training.checkpoints``) hold the trainable weights, their EMA, the optimiser,
the LR schedule and every process's RNG state. Data order is a pure function of (seed,
position in the stream), so ``resume`` reproduces an uninterrupted run exactly without
replaying the data.

``train_denoiser`` reads as the loop it is; its named steps follow it: ``_prepare`` (the
accelerator, optimiser, schedule, EMA), ``_resume``, ``_Latents`` (frames -> cached latents),
``_optimiser_step`` (one micro-batch), ``_log_loss`` and ``_save_and_export``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler

from flipsketch.errors import UsageError
from flipsketch.sampler.latents import encode_frames
from flipsketch.training.batches import batches
from flipsketch.training.checkpoints import (
    CHECKPOINT_PREFIX,
    EMA,
    checkpoints,
    export_weights,
    load_checkpoint,
    named_trainable,
    save_checkpoint,
)
from flipsketch.training.latent_store import LatentStore
from flipsketch.training.noise import denoising_loss, noised_batch
from flipsketch.training.profiling import StepProfiler

# Training reports to its caller through these, as the sampler does with its ``Progress``: the
# CLI draws them with Rich, a program may log or ignore them. Only the main process calls them.
Log = Callable[[str], None]  # an event worth a line: resumed, exported, time limit reached
Progress = Callable[[str, int, int, str], None]
"""``(stage, done, total, info)`` after every optimiser step; ``info`` is e.g. the loss."""


@dataclass
class LoopConfig:
    """Settings of ``train_denoiser``; a YAML stage section maps onto it key by key."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int = 0
    weight_decay: float = 0.0
    caption_dropout: float = 0.1
    # Plain loss for SNR <= gamma, down-weighted as gamma/SNR-ish beyond (min-SNR); None: plain.
    snr_gamma: float | None = None
    ema_decay: float | None = None
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    log_every: int = 10
    export_every: int | None = None
    cache_latents: bool = False  # only for datasets whose item i never changes
    # Keep that cache in RUN_DIR/latents too, so a resumed run reads its pool's latents back
    # instead of encoding them again (``training.latent_store``; fp16, 80 kB a tiny clip).
    store_latents: bool = True
    # "uniform" over the training timesteps, or "high_noise": density rising linearly with t
    # (3/4 of the draws in the noisiest half), for a model that already draws well but has
    # yet to learn what the noisy steps decide: layout and motion.
    timestep_sampling: str = "uniform"
    # Processes rendering/decoding clips ahead of the loop (0: in the loop). A GPU outruns one
    # core drawing synthetic clips; the data stays the same for any number of workers.
    num_workers: int = 0
    # Items 2k and 2k+1 are one pair (the same drawing and caption words, opposite
    # directions: ``SketchAnimator(paired=True)``). A pair shares a batch, its noise, its
    # timestep and its caption dropout, so the only thing that tells its two targets apart
    # is the direction word: the gradient separates opposite words from the first step.
    paired: bool = False
    # Run the first N steps under torch.profiler, with each part of a step timed, and write
    # the tables to RUN_DIR/profile (``training.profiling``): where a step's time goes.
    profile_steps: int = 0
    # With profile_steps: the operators too (torch.profiler: ops.txt, trace.json.gz). False:
    # the section timers only, which is all a cost comparison reads; torch.profiler slows
    # the steps it times, and parsing its trace took 15 s of a 25 s benchmark process.
    profile_operators: bool = True
    # Frames per VAE encode call (0: all frames of the batch at once). On a CPU, 4 frames at
    # a time encode 1.3-2x faster than 40 and give the same latents bit for bit: a 128 px
    # frame's activations (32 channels, 2 MB) then stay in the caches instead of streaming
    # tensors of 84 MB through memory. A GPU wants them all at once.
    vae_chunk: int = 0
    seed: int = 0
    mixed_precision: str = "no"

    @classmethod
    def from_dict(cls, values: dict, **overrides) -> LoopConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown training setting(s) {', '.join(unknown)}; "
                             f"use only {', '.join(sorted(known))}")
        config = cls(**{k: v for k, v in {**values, **overrides}.items() if k in known})
        if config.paired and config.batch_size % 2:
            raise UsageError(f"paired training needs an even batch_size, got "
                             f"{config.batch_size}; pass an even one")
        if config.timestep_sampling not in TIMESTEP_SAMPLING:
            raise UsageError(f"unknown timestep_sampling {config.timestep_sampling!r}; "
                             f"use {' or '.join(TIMESTEP_SAMPLING)}")
        return config


TIMESTEP_SAMPLING = ("uniform", "high_noise")


def sample_timesteps(n: int, num_train_timesteps: int, how: str = "uniform",
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` training timesteps in [0, num_train_timesteps), drawn as ``how`` says (see
    ``LoopConfig.timestep_sampling``); uses torch's global RNG, so resume stays exact."""
    if how == "uniform":
        return torch.randint(0, num_train_timesteps, (n,), device=device)
    # sqrt of a uniform number has density 2x on [0, 1]: linear in t.
    u = torch.rand(n, device=device).sqrt()
    return (u * num_train_timesteps).long().clamp(max=num_train_timesteps - 1)


def loss_weights(scheduler, t: torch.Tensor, snr_gamma: float | None) -> torch.Tensor:
    """Per-sample weight of the loss in the model's prediction type, shape (b,).

    Min-SNR weighting clips the weight of easy, low-noise steps. The textbook form for
    v-prediction, min(snr, gamma)/(snr + 1), gives the pure-noise step of a zero-terminal-SNR
    schedule weight 0, yet that step is where layout and motion are decided; so we keep the
    plain loss up to snr = gamma and only scale down beyond: min(1, (gamma + 1)/(snr + 1)) for
    v, min(1, gamma/snr) for epsilon, min(snr, gamma) for sample.
    """
    if snr_gamma is None:
        return torch.ones_like(t, dtype=torch.float32)
    alpha = scheduler.alphas_cumprod.to(t.device)[t].float()
    snr = alpha / (1 - alpha).clamp(min=1e-8)
    kind = scheduler.config.prediction_type
    if kind == "v_prediction":
        return ((snr_gamma + 1) / (snr + 1)).clamp(max=1)
    if kind == "epsilon":
        return (snr_gamma / snr.clamp(min=1e-8)).clamp(max=1)
    return snr.clamp(max=snr_gamma)


@dataclass
class _Run:
    """What a run holds while it trains: the accelerator and whatever it prepared."""

    accelerator: Accelerator
    named: dict[str, torch.nn.Parameter]  # the trainable parameters, by "part.name"
    wrapped: dict[str, torch.nn.Module]  # the trained models, as accelerate wrapped them
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    ema: EMA | None

    @property
    def device(self) -> torch.device:
        return self.accelerator.device


def train_denoiser(
    components: dict,
    models: dict[str, torch.nn.Module],
    dataset: torch.utils.data.Dataset,
    run_dir: str | os.PathLike,
    config: LoopConfig,
    resume: bool = False,
    on_export: Callable[[dict[str, torch.Tensor], int], None] | None = None,
    time_limit: float | None = None,
    log: Log | None = None,
    progress: Progress | None = None,
) -> dict:
    """Train the ``requires_grad`` parameters of ``models`` (a subset of ``components``, by
    name: ``unet``, ``text_encoder``) to denoise ``dataset``'s clips; returns a summary.

    ``on_export(weights, step)`` receives the EMA (or current) trainable weights every
    ``export_every`` steps and at the end. Losses go to ``run_dir/loss.jsonl``. With
    ``time_limit`` (seconds) the run ends early, checkpointed and exported as at its last step:
    a GPU lent for a fixed time is used to the end without losing the work. ``log`` and
    ``progress`` report to the caller (see ``Log`` and ``Progress``).
    """
    run_dir = Path(run_dir)
    log = log or (lambda line: None)
    progress = progress or (lambda stage, done, total, info: None)
    # Zero-initialised layers (temporal convs, attention outputs) produce denormal gradients and
    # Adam moments early on; on a CPU each denormal operation costs ~100x, which once slowed
    # steps from 2 s to 15 s. Flushing them to zero changes nothing numerically that matters;
    # but it is the whole process's floating-point state, so it goes back to torch's default
    # (off) when training ends, for the caller's own arithmetic.
    torch.set_flush_denormal(True)
    try:
        run = _prepare(components, models, config)
        main = run.accelerator.is_main_process
        step = _resume(run, models, run_dir, config, log) if resume else 0
        if step >= config.steps:
            if main:
                log(f"{run_dir}: already at step {step} of {config.steps}; nothing to do")
            return {"step": step, "loss": None}

        latents = _Latents(components["vae"], run, run_dir, config, log)
        accum = config.gradient_accumulation_steps
        data = batches(dataset, config.batch_size, config.seed, run.accelerator.process_index,
                        run.accelerator.num_processes, start_batch=step * accum,
                        num_workers=config.num_workers, paired=config.paired)
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            for stale in run_dir.glob(f".{CHECKPOINT_PREFIX}*.tmp"):  # from an interrupted save
                shutil.rmtree(stale, ignore_errors=True)
        losses: list[float] = []
        last_loss = None
        started, started_step = time.perf_counter(), step
        waited = 0.0  # seconds spent waiting for data: is the loop data-bound?
        deadline = started + time_limit if time_limit else None
        for model in run.wrapped.values():
            model.train()
        profiler = StepProfiler(config.profile_steps if main else 0, run_dir / "profile",
                                run.device, config.batch_size, config.profile_operators)
        section = profiler.sections.section

        while step < config.steps:
            profiler.sections.start_step()
            tic = time.perf_counter()
            with section("data"):
                indices, batch = next(data)
            waited += time.perf_counter() - tic
            loss = _optimiser_step(run, components, config, latents, indices, batch, section)
            with section("bookkeeping"):
                losses.append(run.accelerator.gather(loss.detach()[None]).mean().item())
            if not run.accelerator.sync_gradients:  # gradients accumulate over micro-batches
                profiler.sections.end_step()
                continue

            step += 1
            out_of_time = _out_of_time(run, deadline)
            last = step == config.steps or out_of_time
            if run.ema is not None:
                with section("ema"):
                    run.ema.update(run.named, step)
            rate = (step - started_step) / (time.perf_counter() - started)
            last_loss = float(np.mean(losses))
            if main:
                progress("train", step, config.steps, f"loss {last_loss:.4f}  {rate:.2f} steps/s")
            if step % config.log_every == 0 or last:
                if main:
                    _log_loss(run_dir / "loss.jsonl", step, last_loss, run.lr_scheduler, rate,
                              waited / (time.perf_counter() - started))
                losses = []
            with section("bookkeeping"):
                _save_and_export(run, run_dir, step, config, latents.cache, on_export, last)
            profiler.sections.end_step()
            profiler.step_done()
            if out_of_time:
                if main:
                    log(f"time limit reached at step {step}")
                break
        profiler.close()  # a run shorter than profile_steps still writes its profile
        run.accelerator.end_training()
        return {"step": step, "loss": last_loss}
    finally:
        torch.set_flush_denormal(False)


def _prepare(components: dict, models: dict[str, torch.nn.Module], config: LoopConfig) -> _Run:
    """The accelerator, the frozen parts on its device, the optimiser, the LR schedule and the
    EMA: everything a run needs before its first step."""
    accelerator = Accelerator(mixed_precision=config.mixed_precision,
                              gradient_accumulation_steps=config.gradient_accumulation_steps)
    set_seed(config.seed, device_specific=True)  # seed + rank: different noise per process
    device = accelerator.device
    if device.type == "cuda":
        # Fixed shapes every step: let cuDNN pick its fastest kernels (the temporal Conv3d
        # layers have no good default) and fp32 matmuls use TF32.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    components["vae"].requires_grad_(False).eval().to(device)
    for name in ("unet", "text_encoder"):
        if name not in models:  # frozen parts still run, in the same precision
            components[name].requires_grad_(False).eval().to(device)

    named = named_trainable(models)
    if not named:
        raise UsageError("nothing to train: no parameter has requires_grad; check the stage")
    # The fused kernel updates every tensor in one pass (2.6x faster than the per-tensor loop
    # that is the CPU default); it exists for CPU and CUDA float tensors.
    fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in named.values())
    optimizer = torch.optim.AdamW(named.values(), lr=config.lr,
                                  weight_decay=config.weight_decay, fused=fused or None)
    # Accelerate steps a prepared scheduler once per process, hence the multiplications.
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer,
                                 num_warmup_steps=config.warmup_steps * accelerator.num_processes,
                                 num_training_steps=config.steps * accelerator.num_processes)
    names = list(models)
    prepared = accelerator.prepare(*models.values(), optimizer, lr_scheduler)
    wrapped = dict(zip(names, prepared[:len(names)], strict=True))
    optimizer, lr_scheduler = prepared[len(names):]
    return _Run(accelerator, named, wrapped,
                unet=wrapped.get("unet", components["unet"]),
                text_encoder=wrapped.get("text_encoder", components["text_encoder"]),
                optimizer=optimizer, lr_scheduler=lr_scheduler,
                ema=EMA(named, config.ema_decay) if config.ema_decay else None)


def _resume(run: _Run, models: dict[str, torch.nn.Module], run_dir: Path, config: LoopConfig,
            log: Log) -> int:
    """The step of the newest checkpoint in ``run_dir``, restored into ``run``; 0 if none."""
    if not checkpoints(run_dir):
        return 0
    newest = checkpoints(run_dir)[-1]
    step = load_checkpoint(newest, run.accelerator, models, run.optimizer, run.lr_scheduler,
                           run.ema)
    if run.accelerator.is_main_process:
        log(f"resumed from {newest} (step {step})")
    # The checkpoint's schedule carries its own learning rate; a resumed run takes the one
    # of its config, which may have been changed (`--set stages.base.lr=...`).
    inner = run.lr_scheduler.scheduler  # the LambdaLR inside accelerate's wrapper
    inner.base_lrs = [config.lr] * len(inner.base_lrs)
    for group, factor in zip(run.optimizer.param_groups, inner.lr_lambdas, strict=True):
        group["lr"] = config.lr * factor(inner.last_epoch)
    return step


class _Latents:
    """Clips' frames -> the VAE's normalised latents, cached by dataset index with
    ``cache_latents`` (kept in RUN_DIR/latents too, so a resumed run does not encode its pool
    again)."""

    def __init__(self, vae, run: _Run, run_dir: Path, config: LoopConfig, log: Log) -> None:
        self.vae, self.device, self.chunk = vae, run.device, config.vae_chunk
        self.cache = (LatentStore(run_dir / "latents", vae, run.accelerator.process_index)
                      if config.cache_latents else None)
        if self.cache is not None and config.store_latents:
            found = self.cache.load()
            if found and run.accelerator.is_main_process:
                log(f"{found} cached latents in {self.cache.folder}")

    def __call__(self, indices: list[int], frames: torch.Tensor) -> torch.Tensor:
        """(b, F, H, W) frames -> (b, c, F, h, w) latents.

        With caching, latents are always served from the (float16) cache, also on first use,
        so a resumed run sees exactly the numbers an uninterrupted one does.
        """
        todo = list(range(len(indices)))
        if self.cache is not None:
            todo = [j for j, i in enumerate(indices) if self.cache.get(i, frames[j]) is None]
        if todo:
            with torch.no_grad():
                fresh = frames[todo].to(self.device)  # (n, F, H, W)
                flat = fresh.flatten(0, 1)
                chunk = self.chunk or len(flat)
                z = torch.cat([encode_frames(self.vae, flat[i:i + chunk]).float()
                               for i in range(0, len(flat), chunk)])  # (n*F, c, h, w)
                z = z.unflatten(0, fresh.shape[:2]).permute(0, 2, 1, 3, 4)  # (n, c, F, h, w)
            if self.cache is None:
                return z
            for j, zj in zip(todo, z, strict=True):
                self.cache.put(indices[j], zj, frames[j])
        return torch.stack([self.cache.latents[i] for i in indices]).to(self.device,
                                                                        torch.float32)


def _optimiser_step(run: _Run, components: dict, config: LoopConfig, latents: _Latents,
                    indices: list[int], batch: dict, section) -> torch.Tensor:
    """One micro-batch: noise the clips, predict, backpropagate the weighted loss, and step
    the optimiser when accelerate says the accumulated gradients are due. Returns the loss."""
    scheduler, tokenizer = components["scheduler"], components["tokenizer"]
    accelerator = run.accelerator
    with accelerator.accumulate(*run.wrapped.values()):
        with section("vae_encode"):
            x0 = latents(indices, batch["frames"])  # (b, c, f, h, w)
        b = x0.shape[0]
        group = 2 if config.paired else 1  # a pair shares noise, timestep and dropout
        with section("noise"):
            dropped = [random.random() < config.caption_dropout for _ in range(b // group)]
            captions = ["" if dropped[k // group] else c for k, c in enumerate(batch["caption"])]
            noise = torch.randn_like(x0[::group]).repeat_interleave(group, dim=0)
            t = sample_timesteps(b // group, scheduler.config.num_train_timesteps,
                                 config.timestep_sampling, run.device).repeat_interleave(group)
            noisy, target = noised_batch(scheduler, x0, noise, t)
        with accelerator.autocast():
            with section("text_encoder"):
                tokens = tokenizer(captions, padding="max_length",
                                   max_length=tokenizer.model_max_length, truncation=True,
                                   return_tensors="pt").input_ids.to(run.device)
                text = run.text_encoder(tokens)[0]  # (b, 77, d)
            with section("unet_forward"):
                pred = run.unet(noisy, t, encoder_hidden_states=text).sample  # (b, c, f, h, w)
                per_sample = denoising_loss(pred, target)  # (b,)
                loss = (per_sample * loss_weights(scheduler, t, config.snr_gamma)).mean()
        with section("backward"):
            accelerator.backward(loss)
        with section("optimizer"):
            if accelerator.sync_gradients and config.max_grad_norm:
                accelerator.clip_grad_norm_(list(run.named.values()), config.max_grad_norm)
            run.optimizer.step()
            run.lr_scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
    return loss


def _out_of_time(run: _Run, deadline: float | None) -> bool:
    """Whether the time limit has come; with several processes, for all of them at once."""
    out_of_time = deadline is not None and time.perf_counter() >= deadline
    if deadline is not None and run.accelerator.num_processes > 1:  # stop together
        flag = torch.tensor([float(out_of_time)], device=run.device)
        out_of_time = bool(run.accelerator.reduce(flag, reduction="sum").item())
    return out_of_time


def _log_loss(path: Path, step: int, loss: float, lr_scheduler, rate: float,
              data_wait: float) -> None:
    entry = {"step": step, "loss": loss, "lr": lr_scheduler.get_last_lr()[0],
             "steps_per_s": round(rate, 4), "time": round(time.time(), 1),
             "data_wait": round(data_wait, 3)}
    with path.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")


def _save_and_export(run: _Run, run_dir: Path, step: int, config: LoopConfig,
                     cache: LatentStore | None, on_export, last: bool) -> None:
    """A checkpoint every ``checkpoint_every`` steps and an export every ``export_every``, both
    at the last step."""
    if step % config.checkpoint_every == 0 or last:
        save_checkpoint(run_dir, step, run.accelerator, run.named, run.optimizer,
                        run.lr_scheduler, run.ema, config.keep_checkpoints)
        if cache is not None and config.store_latents:
            cache.save(step)
    export_now = config.export_every and step % config.export_every == 0
    if on_export and run.accelerator.is_main_process and (export_now or last):
        on_export(export_weights(run.named, run.ema), step)
    run.accelerator.wait_for_everyone()
