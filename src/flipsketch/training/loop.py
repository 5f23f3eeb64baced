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

Checkpoints hold only the trainable weights (a LoRA checkpoint of ModelScope stays small), their
EMA, the optimiser, the LR schedule, every process's RNG state and the step. Data order is a
pure function of (seed, position in the stream), so ``resume`` reproduces an uninterrupted run
exactly without replaying the data.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from safetensors.torch import load_file, save_file

from flipsketch.errors import UsageError
from flipsketch.files import replace_atomically
from flipsketch.sampler.latents import encode_frames
from flipsketch.training.latent_store import LatentStore
from flipsketch.training.noise import denoising_loss, noised_batch
from flipsketch.training.profiling import StepProfiler

CHECKPOINT_PREFIX = "checkpoint-"

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


def _indices(length: int, seed: int, start: int, paired: bool = False):
    """Dataset indices for stream positions ``start, start+1, ...``: a fresh seeded
    permutation per epoch, so position p always maps to the same item. ``paired`` permutes
    pairs (2k, 2k+1) and keeps each pair's two items next to each other."""
    group = 2 if paired else 1
    length -= length % group
    epoch, offset = divmod(start, length)
    while True:
        order = torch.randperm(length // group,
                               generator=torch.Generator().manual_seed(seed + epoch))
        items = (order[:, None] * group + torch.arange(group)).flatten()  # pairs stay adjacent
        yield from items[offset:].tolist()
        epoch, offset = epoch + 1, 0


def _index_batches(length: int, batch_size: int, seed: int, rank: int, world: int,
                   start_batch: int, paired: bool = False) -> Iterator[list[int]]:
    """This process's dataset indices of each batch, from global batch ``start_batch``.

    Global batch g covers stream positions [g*world*B, (g+1)*world*B); process r takes its
    r-th slice, so any number of processes sees the same data as one process would (an even
    B keeps pairs within one process's slice).
    """
    stream = _indices(length, seed, start_batch * world * batch_size, paired)
    while True:
        chunk = [next(stream) for _ in range(world * batch_size)]
        yield chunk[rank * batch_size:(rank + 1) * batch_size]


class _Indexed(torch.utils.data.Dataset):
    """Items paired with their index, so batches made by DataLoader workers say which they are
    (the latent cache is keyed by index)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, dict]:
        return index, self.dataset[index]


def _collate(items: list[tuple[int, dict]]) -> tuple[list[int], dict]:
    return [i for i, _ in items], {"frames": torch.stack([it["frames"] for _, it in items]),
                                   "caption": [it["caption"] for _, it in items]}


def _batches(dataset, batch_size: int, seed: int, rank: int, world: int, start_batch: int,
             num_workers: int = 0, paired: bool = False) -> Iterator[tuple[list[int], dict]]:
    """(indices, batch) pairs for this process from global batch ``start_batch``; with
    ``num_workers`` the items are made in that many worker processes, in the same order."""
    index_batches = _index_batches(len(dataset), batch_size, seed, rank, world, start_batch,
                                   paired)
    if num_workers == 0:
        for mine in index_batches:
            yield _collate([(i, dataset[i]) for i in mine])
        return
    yield from torch.utils.data.DataLoader(
        _Indexed(dataset), batch_sampler=index_batches, num_workers=num_workers,
        collate_fn=_collate, pin_memory=torch.cuda.is_available(), prefetch_factor=4,
        worker_init_fn=_one_thread,
        # Its own generator for the workers' base seed: drawn from the global one, it would
        # shift every later noise draw and make a run with workers differ from one without.
        generator=torch.Generator())


def _one_thread(worker: int) -> None:
    """A worker draws clips on its own core; torch's default of one thread per core in every
    worker would oversubscribe the machine many times over."""
    torch.set_num_threads(1)


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


class _EMA:
    """Exponential moving average of named tensors, with the usual warm-up so that early
    exports are not dominated by the random initialisation."""

    def __init__(self, named: dict[str, torch.Tensor], decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in named.items()}

    @torch.no_grad()
    def update(self, named: dict[str, torch.Tensor], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        # One multi-tensor call instead of a kernel per tensor (hundreds of them).
        torch._foreach_lerp_([self.shadow[k] for k in named],
                             [v.detach().float() for v in named.values()], 1 - decay)


def _named_trainable(models: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Parameter]:
    """``{"unet.down_blocks.0...": param}`` for every parameter that trains."""
    return {f"{part}.{name}": p for part, model in models.items()
            for name, p in model.named_parameters() if p.requires_grad}


def load_weights(models: dict[str, torch.nn.Module], weights: dict[str, torch.Tensor]) -> None:
    """Copy ``{"part.param": tensor}`` into ``models`` (the inverse of ``_named_trainable``)."""
    for part, model in models.items():
        prefix = f"{part}."
        mine = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if not mine:
            continue
        missing = set(mine) - set(model.state_dict())
        if missing:
            raise UsageError(f"checkpoint weights do not fit the {part} ({sorted(missing)[0]}, "
                             "...); use the config the run was started with")
        model.load_state_dict(mine, strict=False)


def checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    run_dir = Path(run_dir)
    found = [p for p in run_dir.glob(f"{CHECKPOINT_PREFIX}*")
             if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit()
             and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def checkpoint_weights(checkpoint: str | os.PathLike, ema: bool = True) -> dict:
    """A checkpoint's trainable weights, the EMA ones when kept and ``ema`` is asked for."""
    checkpoint = Path(checkpoint)
    path = checkpoint / "ema.safetensors"
    if not (ema and path.is_file()):
        path = checkpoint / "trainable.safetensors"
    return load_file(path)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    # steps from 2 s to 15 s. Flushing them to zero changes nothing numerically that matters.
    torch.set_flush_denormal(True)
    accelerator = Accelerator(mixed_precision=config.mixed_precision,
                              gradient_accumulation_steps=config.gradient_accumulation_steps)
    set_seed(config.seed, device_specific=True)  # seed + rank: different noise per process
    device = accelerator.device
    if device.type == "cuda":
        # Fixed shapes every step: let cuDNN pick its fastest kernels (the temporal Conv3d
        # layers have no good default) and fp32 matmuls use TF32.
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    vae, tokenizer, scheduler = (components[k] for k in ("vae", "tokenizer", "scheduler"))
    vae.requires_grad_(False).eval().to(device)
    for name in ("unet", "text_encoder"):
        if name not in models:  # frozen parts still run, in the same precision
            components[name].requires_grad_(False).eval().to(device)

    named = _named_trainable(models)
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
    unet = wrapped.get("unet", components["unet"])
    text_encoder = wrapped.get("text_encoder", components["text_encoder"])
    ema = _EMA(named, config.ema_decay) if config.ema_decay else None

    step = 0
    if resume and checkpoints(run_dir):
        newest = checkpoints(run_dir)[-1]
        step = _load_checkpoint(newest, accelerator, models, optimizer, lr_scheduler, ema)
        if accelerator.is_main_process:
            log(f"resumed from {newest} (step {step})")
        # The checkpoint's schedule carries its own learning rate; a resumed run takes the one
        # of its config, which may have been changed (`--set stages.base.lr=...`).
        inner = lr_scheduler.scheduler  # the LambdaLR inside accelerate's wrapper
        inner.base_lrs = [config.lr] * len(inner.base_lrs)
        for group, factor in zip(optimizer.param_groups, inner.lr_lambdas, strict=True):
            group["lr"] = config.lr * factor(inner.last_epoch)
    if step >= config.steps:
        if accelerator.is_main_process:
            log(f"{run_dir}: already at step {step} of {config.steps}; nothing to do")
        return {"step": step, "loss": None}

    def tokens(captions: list[str]) -> torch.Tensor:
        return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids.to(device)

    # The cache is kept in RUN_DIR/latents too, so a resumed run does not encode its pool again.
    cache = (LatentStore(run_dir / "latents", vae, accelerator.process_index)
             if config.cache_latents else None)
    if cache is not None and config.store_latents:
        found = cache.load()
        if found and accelerator.is_main_process:
            log(f"{found} cached latents in {cache.folder}")

    def latents_of(indices: list[int], frames: torch.Tensor) -> torch.Tensor:
        """(b, F, H, W) frames -> (b, c, F, h, w) normalised latents.

        With caching, latents are always served from the (float16) cache, also on first use,
        so a resumed run sees exactly the numbers an uninterrupted one does.
        """
        todo = list(range(len(indices)))
        if cache is not None:
            todo = [j for j, i in enumerate(indices) if cache.get(i, frames[j]) is None]
        if todo:
            with torch.no_grad():
                fresh = frames[todo].to(device)  # (n, F, H, W)
                flat = fresh.flatten(0, 1)
                chunk = config.vae_chunk or len(flat)
                z = torch.cat([encode_frames(vae, flat[i:i + chunk]).float()
                               for i in range(0, len(flat), chunk)])  # (n*F, c, h, w)
                z = z.unflatten(0, fresh.shape[:2]).permute(0, 2, 1, 3, 4)  # (n, c, F, h, w)
            if cache is None:
                return z
            for j, zj in zip(todo, z, strict=True):
                cache.put(indices[j], zj, frames[j])
        return torch.stack([cache.latents[i] for i in indices]).to(device, torch.float32)

    accum = config.gradient_accumulation_steps
    data = _batches(dataset, config.batch_size, config.seed, accelerator.process_index,
                    accelerator.num_processes, start_batch=step * accum,
                    num_workers=config.num_workers, paired=config.paired)
    log_path = run_dir / "loss.jsonl"
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob(f".{CHECKPOINT_PREFIX}*.tmp"):  # from an interrupted save
            shutil.rmtree(stale, ignore_errors=True)
    losses: list[float] = []
    last_loss = None
    started, started_step = time.perf_counter(), step
    waited = 0.0  # seconds spent waiting for data: is the loop data-bound?
    deadline = started + time_limit if time_limit else None
    for model in wrapped.values():
        model.train()
    profiler = StepProfiler(config.profile_steps if accelerator.is_main_process else 0,
                            run_dir / "profile", device, config.batch_size)
    section = profiler.sections.section

    while step < config.steps:
        profiler.sections.start_step()
        tic = time.perf_counter()
        with section("data"):
            indices, batch = next(data)
        waited += time.perf_counter() - tic
        with accelerator.accumulate(*wrapped.values()):
            with section("vae_encode"):
                x0 = latents_of(indices, batch["frames"])  # (b, c, f, h, w)
            b = x0.shape[0]
            group = 2 if config.paired else 1  # a pair shares noise, timestep and dropout
            with section("noise"):
                dropped = [random.random() < config.caption_dropout for _ in range(b // group)]
                captions = ["" if dropped[k // group] else c
                            for k, c in enumerate(batch["caption"])]
                noise = torch.randn_like(x0[::group]).repeat_interleave(group, dim=0)
                t = sample_timesteps(b // group, scheduler.config.num_train_timesteps,
                                     config.timestep_sampling, device).repeat_interleave(group)
                noisy, target = noised_batch(scheduler, x0, noise, t)
            with accelerator.autocast():
                with section("text_encoder"):
                    text = text_encoder(tokens(captions))[0]  # (b, 77, d)
                with section("unet_forward"):
                    pred = unet(noisy, t, encoder_hidden_states=text).sample  # (b, c, f, h, w)
                    per_sample = denoising_loss(pred, target)  # (b,)
                    loss = (per_sample * loss_weights(scheduler, t, config.snr_gamma)).mean()
            with section("backward"):
                accelerator.backward(loss)
            with section("optimizer"):
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(list(named.values()), config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
        with section("bookkeeping"):
            losses.append(accelerator.gather(loss.detach()[None]).mean().item())
        if not accelerator.sync_gradients:
            profiler.sections.end_step()
            continue

        step += 1
        out_of_time = deadline is not None and time.perf_counter() >= deadline
        if deadline is not None and accelerator.num_processes > 1:  # stop together
            flag = torch.tensor([float(out_of_time)], device=device)
            out_of_time = bool(accelerator.reduce(flag, reduction="sum").item())
        last = step == config.steps or out_of_time
        if ema is not None:
            with section("ema"):
                ema.update(named, step)
        rate = (step - started_step) / (time.perf_counter() - started)
        last_loss = float(np.mean(losses))
        if accelerator.is_main_process:
            progress("train", step, config.steps, f"loss {last_loss:.4f}  {rate:.2f} steps/s")
        if step % config.log_every == 0 or last:
            if accelerator.is_main_process:
                entry = {"step": step, "loss": last_loss, "lr": lr_scheduler.get_last_lr()[0],
                         "steps_per_s": round(rate, 4), "time": round(time.time(), 1),
                         "data_wait": round(waited / (time.perf_counter() - started), 3)}
                with log_path.open("a") as fh:
                    fh.write(json.dumps(entry) + "\n")
            losses = []
        with section("bookkeeping"):
            if step % config.checkpoint_every == 0 or last:
                _save_checkpoint(run_dir, step, accelerator, named, optimizer, lr_scheduler,
                                 ema, config.keep_checkpoints)
                if cache is not None and config.store_latents:
                    cache.save(step)
            export_now = config.export_every and step % config.export_every == 0
            if on_export and accelerator.is_main_process and (export_now or last):
                on_export(_export_weights(named, ema), step)
            accelerator.wait_for_everyone()
        profiler.sections.end_step()
        profiler.step_done()
        if out_of_time:
            if accelerator.is_main_process:
                log(f"time limit reached at step {step}")
            break
    profiler.close()  # a run shorter than profile_steps still writes its profile
    accelerator.end_training()
    return {"step": step, "loss": last_loss}


def _export_weights(named: dict[str, torch.Tensor], ema: _EMA | None) -> dict[str, torch.Tensor]:
    if ema is not None:
        return {k: v.cpu().clone() for k, v in ema.shadow.items()}
    return {k: v.detach().float().cpu().clone() for k, v in named.items()}


def _save_checkpoint(run_dir: Path, step: int, accelerator: Accelerator,
                     named: dict[str, torch.Tensor], optimizer, lr_scheduler,
                     ema: _EMA | None, keep: int) -> Path:
    """Write ``checkpoint-<step>`` via a temp folder, so a crash never leaves half of one.

    The temp folder's name is fixed, not random as ``files.atomic_path``'s, because every
    process writes its RNG state into it; a crash leaves it for the next run to delete.
    """
    final = run_dir / f"{CHECKPOINT_PREFIX}{step:07d}"
    tmp = run_dir / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(_rng_state(), tmp / f"rng_{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in named.items()},
                  tmp / "trainable.safetensors")
        if ema is not None:
            save_file({k: v.cpu() for k, v in ema.shadow.items()}, tmp / "ema.safetensors")
        torch.save({"optimizer": optimizer.state_dict(),
                    "lr_scheduler": lr_scheduler.state_dict()}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step}) + "\n")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_atomically(tmp, final)  # a checkpoint of this step, if any, goes only now
        for old in checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _load_checkpoint(path: Path, accelerator: Accelerator, models: dict[str, torch.nn.Module],
                     optimizer, lr_scheduler, ema: _EMA | None) -> int:
    """Restore everything ``_save_checkpoint`` wrote; returns the step."""
    load_weights(models, load_file(path / "trainable.safetensors"))
    if ema is not None and (path / "ema.safetensors").is_file():
        ema.shadow = load_file(path / "ema.safetensors", device=str(accelerator.device))
    state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    rng = path / f"rng_{accelerator.process_index}.pt"
    if rng.is_file():  # absent when resuming on more processes than saved: fresh per-rank seed
        _set_rng_state(torch.load(rng, weights_only=False))
    return json.loads((path / "state.json").read_text())["step"]
