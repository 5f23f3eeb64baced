"""Training the embedded tiny model: the VAE stage, then UNet + text encoder on synthetic clips.

``train_base`` runs the stages of a config (``flipsketch/models/tiny.yaml``) into a run folder:
the VAE learns to reconstruct strokes, then the one denoising loop (``loop.train_denoiser``)
trains the UNet and text encoder on ``SketchAnimator`` clips, exporting EMA weights as it goes.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import PartialState

from flipsketch.errors import UsageError
from flipsketch.files import atomic_path
from flipsketch.sampler.latents import encode_frames
from flipsketch.training.checkpoints import checkpoint_weights, checkpoints, load_weights
from flipsketch.training.data import AnimatorClips
from flipsketch.training.loop import Log, LoopConfig, Progress, train_denoiser
from flipsketch.training.synth import SketchAnimator

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
              stroke_weight: float, seed: int = 0, log_every: int = 50,
              progress: Progress | None = None) -> list[float]:
    """A short single-process stage: the VAE on ``stills(i)`` drawings; returns the losses.

    Short enough not to need checkpoints: the caller saves the finished VAE and skips this
    stage on resume. ``progress`` is told of every step, as stage "vae".
    """
    progress = progress or (lambda stage, done, total, info: None)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    losses = []
    log_path = Path(run_dir) / "vae_loss.jsonl"
    started = time.perf_counter()
    for step in range(1, steps + 1):
        frames = torch.from_numpy(np.stack([stills((step - 1) * batch_size + i)
                                            for i in range(batch_size)]))
        loss = vae_loss(vae, _stroke_crops(frames, crop, generator), stroke_weight, kl_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        progress("vae", step, steps, f"loss {loss.item():.4f}")
        if step % log_every == 0 or step == steps:
            entry = {"step": step, "loss": float(np.mean(losses[-log_every:])),
                     "steps_per_s": round(step / (time.perf_counter() - started), 3)}
            with log_path.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
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
    from flipsketch.models.tiny import export_model

    parts = dict(components)
    for name in ("unet", "text_encoder"):
        parts[name] = copy.deepcopy(components[name]).cpu()
    load_weights({"unet": parts["unet"], "text_encoder": parts["text_encoder"]}, weights)
    return export_model(parts, out_dir)


def _save_vae(vae, folder: Path) -> None:
    """Replace ``run_dir/vae`` whole: its presence tells a resumed run the stage is done."""
    with atomic_path(folder, force=True) as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)


def train_base(config: dict, run_dir: str | os.PathLike, resume: bool = False,
               from_shipped: bool = False, steps: int | None = None,
               export_dir: str | os.PathLike | None = None,
               time_limit: float | None = None, log: Log | None = None,
               progress: Progress | None = None) -> dict:
    """Train the tiny model from ``config`` (src/flipsketch/models/tiny.yaml) into ``run_dir``.

    Stages: the VAE (skipped when ``run_dir/vae`` exists or when the VAE starts from a model
    folder), its latent statistics, then the UNet and text encoder on synthetic clips. Weights
    are exported (EMA) to ``export_dir`` (default ``run_dir/model``) as training goes.

    ``from_shipped`` starts every part from the shipped model (same architecture); the
    config's ``init`` section starts only some parts from a model folder, e.g. a new UNet
    with the shipped VAE and text encoder. ``time_limit`` (seconds) ends the UNet stage early.
    ``log`` and ``progress`` report to the caller, as in ``loop.train_denoiser``.
    """
    from diffusers import AutoencoderKL

    from flipsketch.models.presets import TINY_DIR
    from flipsketch.models.tiny import build_components, load_components

    run_dir = Path(run_dir)
    log = log or (lambda line: None)
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
            log(f"using the VAE in {vae_dir}")
        elif "vae" in init_parts or int(stages["vae"]["steps"]) == 0:
            _save_vae(components["vae"], vae_dir)  # the starting VAE, kept with the run
        else:
            v = stages["vae"]
            animator = SketchAnimator(size=int(model_cfg["resolution"]),
                                      num_frames=int(model_cfg["num_frames"]), seed=seed)
            train_vae(components["vae"], animator.still, run_dir, steps=int(v["steps"]),
                      batch_size=int(v["batch_size"]), lr=float(v["lr"]), crop=int(v["crop"]),
                      kl_weight=float(v["kl_weight"]), stroke_weight=float(v["stroke_weight"]),
                      seed=seed, progress=progress)
            # Statistics on what the UNet will see: whole frames of training clips.
            count = int(v["stats_frames"]) // int(model_cfg["num_frames"]) + 1
            clips = [animator.clip(10**9 + i).frames for i in range(count)]
            measure_latent_stats(components["vae"], torch.from_numpy(np.concatenate(clips)))
            _save_vae(components["vae"], vae_dir)
            log(f"VAE trained; latents mean {components['vae'].config.latents_mean} "
                f"std {components['vae'].config.latents_std}")
    state.wait_for_everyone()
    components["vae"] = AutoencoderKL.from_pretrained(vae_dir)

    base = dict(stages["base"])
    clips = int(base.pop("clips"))
    motion_weights = base.pop("motion_weights", None)
    data = {k: float(base.pop(k)) for k in ("doodle_share", "generic_share", "part_share")
            if k in base}
    if "travel" in base:
        data["travel"] = tuple(base.pop("travel"))
    data["paired"] = bool(base.get("paired", False))  # the loop keeps pairs together too
    loop = LoopConfig.from_dict(base, seed=seed,
                                # YAML reads a bare `no` (e.g. from --set) as false
                                mixed_precision=config.get("mixed_precision") or "no",
                                **({"steps": steps} if steps else {}))
    dataset = AnimatorClips(clips, int(model_cfg["num_frames"]), int(model_cfg["resolution"]),
                            seed=seed, motion_weights=motion_weights, **data)
    for name in ("unet", "text_encoder"):
        components[name].requires_grad_(True)
    out = Path(export_dir) if export_dir else run_dir / "model"

    def on_export(weights: dict[str, torch.Tensor], step: int) -> None:
        export_trained(components, weights, out)
        log(f"exported step {step} to {out}")

    models = {"unet": components["unet"], "text_encoder": components["text_encoder"]}
    return train_denoiser(components, models, dataset, run_dir, loop, resume=resume,
                          on_export=on_export, time_limit=time_limit, log=log,
                          progress=progress)


def _check_fits(name: str, loaded: torch.nn.Module, built: torch.nn.Module) -> None:
    """A part loaded from a model folder must be the architecture the config describes (the
    part just built from it); else the run would silently train something else. Frame
    positions hold no weights, so they are compared by their config key."""
    from flipsketch.models.frame_positions import CONFIG_KEY

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

    from flipsketch.models.tiny import build_components, load_config

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
