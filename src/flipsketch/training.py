"""The one denoising-loss training loop, plus the VAE stage of the embedded tiny model.

``train_denoiser`` trains whatever parameters of the UNet and text encoder have
``requires_grad`` (all of them for the base model, only LoRA adapters for a fine-tune) on any
dataset whose items are ``dict(frames=(F, H, W) float in [0, 1], caption=str)``. Base training
and LoRA fine-tuning differ only in which parameters train, which dataset feeds the loop and
what the caller exports; the loss, the schedule, checkpoints and resume are shared.

The loss is the model's own: noise is added with ``scheduler.add_noise`` at timesteps drawn
uniformly over the training steps and the target comes from ``schedule.training_target``, so a
v-prediction model learns velocity and an epsilon model (ModelScope) learns noise. Captions are
dropped (replaced by "") with probability ``caption_dropout`` so that classifier-free guidance
has an unconditional model to push against.

Checkpoints hold only the trainable weights (a LoRA checkpoint of ModelScope stays small), their
EMA, the optimiser, the LR schedule, every process's RNG state and the step. Data order is a
pure function of (seed, position in the stream), so ``resume`` reproduces an uninterrupted run
exactly without replaying the data.
"""

from __future__ import annotations

import copy
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
import torch.nn.functional as F
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from flipsketch.cli.app import console
from flipsketch.errors import UsageError
from flipsketch.latents import encode_frames
from flipsketch.schedule import training_target
from flipsketch.synth import SketchAnimator

CHECKPOINT_PREFIX = "checkpoint-"


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
    # "uniform" over the training timesteps, or "high_noise": density rising linearly with t
    # (3/4 of the draws in the noisiest half), for a model that already draws well but has
    # yet to learn what the noisy steps decide: layout and motion.
    timestep_sampling: str = "uniform"
    # Processes rendering/decoding clips ahead of the loop (0: in the loop). A GPU outruns one
    # core drawing synthetic clips; the data stays the same for any number of workers.
    num_workers: int = 0
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


class AnimatorClips(torch.utils.data.Dataset):
    """``SketchAnimator`` clips as a map-style dataset of ``size`` items (item i = clip i).

    Map-style, unlike ``data.SyntheticClips``, so that the loop can address clips by position:
    exact resume, sharding across processes and latent caching all need item i to be fixed.
    """

    def __init__(self, size: int, num_frames: int, resolution: int, seed: int = 0,
                 motion_weights: dict[str, float] | None = None, doodle_share: float = 0.0,
                 generic_share: float = 0.0):
        self.animator = SketchAnimator(size=resolution, num_frames=num_frames, seed=seed,
                                       motion_weights=motion_weights, doodle_share=doodle_share,
                                       generic_share=generic_share)
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        clip = self.animator.clip(index)
        return {"frames": torch.from_numpy(clip.frames), "caption": clip.caption}


def _indices(length: int, seed: int, start: int):
    """Dataset indices for stream positions ``start, start+1, ...``: a fresh seeded
    permutation per epoch, so position p always maps to the same item."""
    epoch, offset = divmod(start, length)
    while True:
        order = torch.randperm(length, generator=torch.Generator().manual_seed(seed + epoch))
        yield from order[offset:].tolist()
        epoch, offset = epoch + 1, 0


def _index_batches(length: int, batch_size: int, seed: int, rank: int, world: int,
                   start_batch: int) -> Iterator[list[int]]:
    """This process's dataset indices of each batch, from global batch ``start_batch``.

    Global batch g covers stream positions [g*world*B, (g+1)*world*B); process r takes its
    r-th slice, so any number of processes sees the same data as one process would.
    """
    stream = _indices(length, seed, start_batch * world * batch_size)
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
             num_workers: int = 0) -> Iterator[tuple[list[int], dict]]:
    """(indices, batch) pairs for this process from global batch ``start_batch``; with
    ``num_workers`` the items are made in that many worker processes, in the same order."""
    index_batches = _index_batches(len(dataset), batch_size, seed, rank, world, start_batch)
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
        for k, v in named.items():
            self.shadow[k].lerp_(v.detach().float(), 1 - decay)


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
) -> dict:
    """Train the ``requires_grad`` parameters of ``models`` (a subset of ``components``, by
    name: ``unet``, ``text_encoder``) to denoise ``dataset``'s clips; returns a summary.

    ``on_export(weights, step)`` receives the EMA (or current) trainable weights every
    ``export_every`` steps and at the end. Losses go to ``run_dir/loss.jsonl``. With
    ``time_limit`` (seconds) the run ends early, checkpointed and exported as at its last step:
    a GPU lent for a fixed time is used to the end without losing the work.
    """
    run_dir = Path(run_dir)
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
    optimizer = torch.optim.AdamW(named.values(), lr=config.lr,
                                  weight_decay=config.weight_decay)
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
        step = _load_checkpoint(checkpoints(run_dir)[-1], accelerator, models, optimizer,
                                lr_scheduler, ema)
        # The checkpoint's schedule carries its own learning rate; a resumed run takes the one
        # of its config, which may have been changed (`--set stages.base.lr=...`).
        inner = lr_scheduler.scheduler  # the LambdaLR inside accelerate's wrapper
        inner.base_lrs = [config.lr] * len(inner.base_lrs)
        for group, factor in zip(optimizer.param_groups, inner.lr_lambdas, strict=True):
            group["lr"] = config.lr * factor(inner.last_epoch)
    if step >= config.steps:
        console.print(f"{run_dir}: already at step {step} of {config.steps}; nothing to do")
        return {"step": step, "loss": None}

    def tokens(captions: list[str]) -> torch.Tensor:
        return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids.to(device)

    cache: dict[int, torch.Tensor] = {}

    def latents_of(indices: list[int], frames: torch.Tensor) -> torch.Tensor:
        """(b, F, H, W) frames -> (b, c, F, h, w) normalised latents.

        With caching, latents are always served from the (float16) cache, also on first use,
        so a resumed run (empty cache) sees exactly the numbers an uninterrupted one does.
        """
        todo = [j for j, i in enumerate(indices) if i not in cache]
        if not config.cache_latents:
            todo = list(range(len(indices)))
        if todo:
            with torch.no_grad():
                fresh = frames[todo].to(device)  # (n, F, H, W)
                z = encode_frames(vae, fresh.flatten(0, 1)).float()  # (n*F, c, h, w)
                z = z.unflatten(0, fresh.shape[:2]).permute(0, 2, 1, 3, 4)  # (n, c, F, h, w)
            if not config.cache_latents:
                return z
            for j, zj in zip(todo, z, strict=True):
                cache[indices[j]] = zj.to("cpu", torch.float16)
        return torch.stack([cache[i] for i in indices]).to(device, torch.float32)

    accum = config.gradient_accumulation_steps
    data = _batches(dataset, config.batch_size, config.seed, accelerator.process_index,
                    accelerator.num_processes, start_batch=step * accum,
                    num_workers=config.num_workers)
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

    progress = Progress(TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                        console=console, disable=not accelerator.is_main_process)
    with progress:
        task = progress.add_task("train", total=config.steps, completed=step, info="")
        while step < config.steps:
            tic = time.perf_counter()
            indices, batch = next(data)
            waited += time.perf_counter() - tic
            with accelerator.accumulate(*wrapped.values()):
                x0 = latents_of(indices, batch["frames"])  # (b, c, f, h, w)
                b = x0.shape[0]
                captions = ["" if random.random() < config.caption_dropout else c
                            for c in batch["caption"]]
                noise = torch.randn_like(x0)
                t = sample_timesteps(b, scheduler.config.num_train_timesteps,
                                     config.timestep_sampling, device)
                noisy = scheduler.add_noise(x0, noise, t)
                target = training_target(scheduler, x0, noise, t)
                with accelerator.autocast():
                    text = text_encoder(tokens(captions))[0]  # (b, 77, d)
                    pred = unet(noisy, t, encoder_hidden_states=text).sample  # (b, c, f, h, w)
                per_sample = F.mse_loss(pred.float(), target.float(), reduction="none")
                per_sample = per_sample.mean(dim=(1, 2, 3, 4))  # (b,)
                loss = (per_sample * loss_weights(scheduler, t, config.snr_gamma)).mean()
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(list(named.values()), config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            losses.append(accelerator.gather(loss.detach()[None]).mean().item())
            if not accelerator.sync_gradients:
                continue

            step += 1
            out_of_time = deadline is not None and time.perf_counter() >= deadline
            if deadline is not None and accelerator.num_processes > 1:  # stop together
                flag = torch.tensor([float(out_of_time)], device=device)
                out_of_time = bool(accelerator.reduce(flag, reduction="sum").item())
            last = step == config.steps or out_of_time
            if ema is not None:
                ema.update(named, step)
            rate = (step - started_step) / (time.perf_counter() - started)
            last_loss = float(np.mean(losses))
            progress.update(task, completed=step,
                            info=f"loss {last_loss:.4f}  {rate:.2f} steps/s")
            if step % config.log_every == 0 or last:
                if accelerator.is_main_process:
                    entry = {"step": step, "loss": last_loss, "lr": lr_scheduler.get_last_lr()[0],
                             "steps_per_s": round(rate, 4), "time": round(time.time(), 1),
                             "data_wait": round(waited / (time.perf_counter() - started), 3)}
                    with log_path.open("a") as fh:
                        fh.write(json.dumps(entry) + "\n")
                    if not console.is_terminal:  # a log file gets plain lines instead of a bar
                        console.print(f"step {step}/{config.steps} loss {last_loss:.4f} "
                                      f"{rate:.3f} steps/s", highlight=False)
                losses = []
            if step % config.checkpoint_every == 0 or last:
                _save_checkpoint(run_dir, step, accelerator, named, optimizer, lr_scheduler,
                                 ema, config.keep_checkpoints)
            export_now = config.export_every and step % config.export_every == 0
            if on_export and accelerator.is_main_process and (export_now or last):
                on_export(_export_weights(named, ema), step)
            accelerator.wait_for_everyone()
            if out_of_time:
                console.print(f"time limit reached at step {step}", highlight=False)
                break
    accelerator.end_training()
    return {"step": step, "loss": last_loss}


def _export_weights(named: dict[str, torch.Tensor], ema: _EMA | None) -> dict[str, torch.Tensor]:
    if ema is not None:
        return {k: v.cpu().clone() for k, v in ema.shadow.items()}
    return {k: v.detach().float().cpu().clone() for k, v in named.items()}


def _save_checkpoint(run_dir: Path, step: int, accelerator: Accelerator,
                     named: dict[str, torch.Tensor], optimizer, lr_scheduler,
                     ema: _EMA | None, keep: int) -> Path:
    """Write ``checkpoint-<step>`` via a temp folder, so a crash never leaves half of one."""
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
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
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
    step = json.loads((path / "state.json").read_text())["step"]
    console.print(f"resumed from {path} (step {step})")
    return step


# -- the VAE stage of the tiny model -------------------------------------------------------------


def _stroke_crops(frames: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    """(n, H, W) frames -> (n, crop, crop) crops centred on a random ink pixel of each, so
    the VAE spends its capacity on strokes rather than on blank paper."""
    n, h, w = frames.shape
    out = torch.empty(n, crop, crop)
    for i, frame in enumerate(frames):
        ys, xs = torch.nonzero(frame < 0.5, as_tuple=True)
        if len(ys):
            j = int(torch.randint(len(ys), (1,), generator=generator))
            cy, cx = int(ys[j]), int(xs[j])
        else:
            cy, cx = h // 2, w // 2
        top = min(max(cy - crop // 2, 0), h - crop)
        left = min(max(cx - crop // 2, 0), w - crop)
        out[i] = frame[top:top + crop, left:left + crop]
    return out


def vae_loss(vae, x: torch.Tensor, stroke_weight: float, kl_weight: float) -> torch.Tensor:
    """Reconstruction (L1 + MSE, weighted up on and next to strokes) + a tiny KL term.

    Sketches are mostly white; an unweighted loss is happy to blur or drop thin lines.
    """
    x = x[:, None] * 2 - 1  # (n, 1, H, W) in [-1, 1]
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample()).sample  # (n, 1, H, W)
    ink = F.max_pool2d((x < 0).float(), kernel_size=5, stride=1, padding=2)  # strokes + 2 px
    weight = 1 + stroke_weight * ink
    err = recon - x
    rec = (weight * (err.abs() + err.square())).mean()
    return rec + kl_weight * posterior.kl().mean()


def train_vae(vae, stills: Callable[[int], np.ndarray], run_dir: str | os.PathLike,
              steps: int, batch_size: int, lr: float, crop: int, kl_weight: float,
              stroke_weight: float, seed: int = 0, log_every: int = 50) -> list[float]:
    """A short single-process stage: the VAE on ``stills(i)`` drawings; returns the losses.

    Short enough not to need checkpoints: the caller saves the finished VAE and skips this
    stage on resume.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    losses = []
    log_path = Path(run_dir) / "vae_loss.jsonl"
    started = time.perf_counter()
    with Progress(console=console) as progress:
        task = progress.add_task("vae", total=steps)
        for step in range(1, steps + 1):
            frames = torch.from_numpy(np.stack([stills((step - 1) * batch_size + i)
                                                for i in range(batch_size)]))
            loss = vae_loss(vae, _stroke_crops(frames, crop, generator), stroke_weight,
                            kl_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            progress.update(task, completed=step, description=f"vae loss {loss.item():.4f}")
            if step % log_every == 0 or step == steps:
                entry = {"step": step, "loss": float(np.mean(losses[-log_every:])),
                         "steps_per_s": round(step / (time.perf_counter() - started), 3)}
                with log_path.open("a") as fh:
                    fh.write(json.dumps(entry) + "\n")
                if not console.is_terminal:
                    console.print(f"vae step {step}/{steps} loss {entry['loss']:.4f}")
    vae.eval()
    return losses


@torch.no_grad()
def measure_latent_stats(vae, frames: torch.Tensor, batch: int = 32) -> None:
    """Per-channel mean/std of the VAE's latents on ``frames`` (n, H, W), stored in its config
    so that ``latents.py`` hands the UNet zero-mean, unit-variance latents."""
    vae.register_to_config(latents_mean=None, latents_std=None)  # raw latents for measuring
    vae.register_to_config(scaling_factor=1.0, shift_factor=None)
    z = torch.cat([encode_frames(vae, frames[i:i + batch]).float()
                   for i in range(0, len(frames), batch)])  # (n, c, h, w)
    mean = z.mean(dim=(0, 2, 3))
    std = z.std(dim=(0, 2, 3)).clamp(min=1e-6)
    vae.register_to_config(latents_mean=[round(float(m), 6) for m in mean],
                           latents_std=[round(float(s), 6) for s in std])


# -- the base model of the tiny model: VAE stage, then UNet + text encoder ----------------------


def export_trained(components: dict, weights: dict[str, torch.Tensor],
                   out_dir: str | os.PathLike) -> Path:
    """Export ``components`` with ``weights`` (``{"unet.x": ...}``) swapped in, leaving the
    live training models untouched."""
    from flipsketch.tiny import export_model

    parts = dict(components)
    for name in ("unet", "text_encoder"):
        parts[name] = copy.deepcopy(components[name]).cpu()
    load_weights({"unet": parts["unet"], "text_encoder": parts["text_encoder"]}, weights)
    return export_model(parts, out_dir)


def _save_vae(vae, folder: Path) -> None:
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    vae.save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def train_base(config: dict, run_dir: str | os.PathLike, resume: bool = False,
               from_shipped: bool = False, steps: int | None = None,
               export_dir: str | os.PathLike | None = None,
               time_limit: float | None = None) -> dict:
    """Train the tiny model from ``config`` (configs/tiny.yaml) into ``run_dir``.

    Stages: the VAE (skipped when ``run_dir/vae`` exists or when the VAE starts from a model
    folder), its latent statistics, then the UNet and text encoder on synthetic clips. Weights
    are exported (EMA) to ``export_dir`` (default ``run_dir/model``) as training goes.

    ``from_shipped`` starts every part from the shipped model (same architecture); the
    config's ``init`` section starts only some parts from a model folder, e.g. a new UNet
    with the shipped VAE and text encoder. ``time_limit`` (seconds) ends the UNet stage early.
    """
    from diffusers import AutoencoderKL

    from flipsketch.tiny import TINY_DIR, build_components, load_components

    run_dir = Path(run_dir)
    if run_dir.exists() and checkpoints(run_dir) and not resume:
        raise UsageError(f"{run_dir} already holds checkpoints; pass --resume to continue it "
                         "or -o a new folder")
    model_cfg, stages = config["model"], config["stages"]
    seed = int(config.get("seed", 0))
    components = build_components(config)
    init = config.get("init") or {}
    weighted = ("vae", "unet", "text_encoder")  # the tokenizer and scheduler are not trained
    init_parts = list(weighted) if from_shipped else list(init.get("parts", []))
    unknown = sorted(set(init_parts) - set(weighted))
    if unknown:
        raise UsageError(f"init.parts names {', '.join(unknown)}; use some of "
                         f"{', '.join(weighted)}")
    if init_parts:
        source = init.get("from", "shipped")
        source = TINY_DIR if from_shipped or source == "shipped" else Path(source)
        loaded = load_components(source)
        for part in init_parts:
            _check_fits(part, loaded[part], components[part])
            components[part] = loaded[part]

    # Under `accelerate launch` only the main process writes; the VAE stage is one process's
    # job and the others load its result.
    state = PartialState()
    vae_dir = run_dir / "vae"
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(_dump_yaml(config))
        if (vae_dir / "config.json").is_file():
            console.print(f"using the VAE in {vae_dir}")
        elif "vae" in init_parts or int(stages["vae"]["steps"]) == 0:
            _save_vae(components["vae"], vae_dir)  # the starting VAE, kept with the run
        else:
            v = stages["vae"]
            animator = SketchAnimator(size=int(model_cfg["resolution"]),
                                      num_frames=int(model_cfg["num_frames"]), seed=seed)
            train_vae(components["vae"], animator.still, run_dir, steps=int(v["steps"]),
                      batch_size=int(v["batch_size"]), lr=float(v["lr"]), crop=int(v["crop"]),
                      kl_weight=float(v["kl_weight"]), stroke_weight=float(v["stroke_weight"]),
                      seed=seed)
            # Statistics on what the UNet will see: whole frames of training clips.
            count = int(v["stats_frames"]) // int(model_cfg["num_frames"]) + 1
            clips = [animator.clip(10**9 + i).frames for i in range(count)]
            measure_latent_stats(components["vae"], torch.from_numpy(np.concatenate(clips)))
            _save_vae(components["vae"], vae_dir)
            console.print(f"VAE trained; latents mean {components['vae'].config.latents_mean} "
                          f"std {components['vae'].config.latents_std}")
    state.wait_for_everyone()
    components["vae"] = AutoencoderKL.from_pretrained(vae_dir)

    base = dict(stages["base"])
    clips = int(base.pop("clips"))
    motion_weights = base.pop("motion_weights", None)
    shares = {k: float(base.pop(k, 0.0)) for k in ("doodle_share", "generic_share")}
    loop = LoopConfig.from_dict(base, seed=seed,
                                # YAML reads a bare `no` (e.g. from --set) as false
                                mixed_precision=config.get("mixed_precision") or "no",
                                **({"steps": steps} if steps else {}))
    dataset = AnimatorClips(clips, int(model_cfg["num_frames"]), int(model_cfg["resolution"]),
                            seed=seed, motion_weights=motion_weights, **shares)
    for name in ("unet", "text_encoder"):
        components[name].requires_grad_(True)
    out = Path(export_dir) if export_dir else run_dir / "model"

    def on_export(weights: dict[str, torch.Tensor], step: int) -> None:
        export_trained(components, weights, out)
        console.print(f"exported step {step} to {out}")

    models = {"unet": components["unet"], "text_encoder": components["text_encoder"]}
    return train_denoiser(components, models, dataset, run_dir, loop, resume=resume,
                          on_export=on_export, time_limit=time_limit)


def _check_fits(name: str, loaded: torch.nn.Module, built: torch.nn.Module) -> None:
    """A part loaded from a model folder must be the architecture the config describes (the
    part just built from it); else the run would silently train something else. Frame
    positions hold no weights, so they are compared by their config key."""
    from flipsketch.frame_positions import CONFIG_KEY

    def shapes(module: torch.nn.Module) -> dict[str, tuple]:
        return {k: tuple(v.shape) for k, v in module.state_dict().items()}

    def positions(module: torch.nn.Module) -> int | None:
        return getattr(module.config, CONFIG_KEY, None)

    if shapes(loaded) != shapes(built) or positions(loaded) != positions(built):
        raise UsageError(f"the {name} loaded to start from does not fit the config's "
                         f"architecture; start it from scratch (drop it from init.parts)")


def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike, ema: bool = True) -> Path:
    """Export the newest checkpoint of a base run (EMA weights when kept) as a model folder."""
    from diffusers import AutoencoderKL

    from flipsketch.tiny import build_components, load_config

    run_dir = Path(run_dir)
    found = checkpoints(run_dir)
    if not found:
        raise UsageError(f"{run_dir} has no checkpoint yet; wait for one or check the path")
    components = build_components(load_config(run_dir / "config.yaml"))
    components["vae"] = AutoencoderKL.from_pretrained(run_dir / "vae")
    return export_trained(components, checkpoint_weights(found[-1], ema=ema), out_dir)


def _dump_yaml(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)
