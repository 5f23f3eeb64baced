"""Do opposite-direction pairs teach the direction words? A small, fair CPU experiment.

v2 learnt the axis of a motion but not its sign: after 144k clips the direction words changed
its loss by -0.5..+0.3 % (``flipsketch eval captions``). Issue 20 asks for a training change
that makes opposite words distinct from the first step, chosen by an experiment. Two runs that
continue the shipped model (as retraining the default does; ``--from-scratch`` starts a small
UNet and a fresh text encoder instead), from the same seed, on the same clips of the four
translations, differ only in how clips are batched:

- ``unpaired`` (v2's recipe): independent clips, each with its own noise and timestep;
- ``paired`` (v3's): clips 2k and 2k+1 are one drawing travelling opposite ways, in one batch,
  with one noise and one timestep (``SketchAnimator(paired=True)``, ``LoopConfig.paired``),
  so the only difference between their targets is the direction word.

After every ``--every`` steps both are measured by the direction gap of ``eval captions``
(loss with the opposite direction's caption over the true one, minus 1, at t = 950 and 800:
0 means the words change nothing). Results go to OUT/results.json and a Markdown table.

    OMP_NUM_THREADS=2 python scripts/paired_experiment.py -o runs/paired
    python scripts/paired_experiment.py -o /tmp/p --steps 2 --every 1   # checks that it runs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from diffusers import AutoencoderKL

from flipsketch.evaluation.runs import caption_sensitivity
from flipsketch.models.presets import TINY_DIR
from flipsketch.models.tiny import CONFIG_PATH, build_components, load_components, load_config
from flipsketch.sampler.pipeline import FlipSketchPipeline
from flipsketch.training.data import AnimatorClips
from flipsketch.training.loop import LoopConfig, train_denoiser
from flipsketch.training.synth import MOTIONS, TRANSLATIONS

# --from-scratch: a quarter of the tiny UNet's width (the question is the recipe, not the
# architecture).
SMALL_UNET = {"block_out_channels": [32, 64, 64]}
# Only the four translations are drawn (every other motion weighs 0).
ONLY_TRANSLATIONS = {m: (1.0 if m in TRANSLATIONS else 0.0) for m in MOTIONS}


def run(name: str, paired: bool, args: argparse.Namespace, log) -> list[dict]:
    if args.from_scratch:
        config = load_config(CONFIG_PATH)
        config["model"]["unet"].update(SMALL_UNET)
        components = build_components(config)  # the same seed for both runs
        components["vae"] = AutoencoderKL.from_pretrained(TINY_DIR, subfolder="vae")
    else:
        components = load_components(TINY_DIR)
    for part in ("unet", "text_encoder"):
        components[part].requires_grad_(True)
    models = {"unet": components["unet"], "text_encoder": components["text_encoder"]}
    clips = AnimatorClips(args.clips, 10, 128, seed=0, motion_weights=ONLY_TRANSLATIONS,
                          paired=paired)
    curve = [measure(name, 0, None, 0.0, components, models, args, log)]
    for step in range(args.every, args.steps + 1, args.every):
        loop = LoopConfig(steps=step, batch_size=args.batch, lr=args.lr,
                          warmup_steps=min(20, args.steps), caption_dropout=0.1,
                          snr_gamma=5.0, cache_latents=True, checkpoint_every=args.every,
                          keep_checkpoints=1, log_every=args.every,
                          timestep_sampling="high_noise", paired=paired, seed=0)
        started = time.perf_counter()
        summary = train_denoiser(components, models, clips, args.output / name, loop,
                                 resume=True)  # continues from the previous measurement
        trained = time.perf_counter() - started
        curve.append(measure(name, step, summary["loss"], trained, components, models, args,
                             log))
    return curve


def measure(name: str, step: int, loss: float | None, trained: float, components: dict,
            models: dict, args: argparse.Namespace, log) -> dict:
    """The direction gap of the live model (the same held-out clips and noise every time)."""
    pipe = FlipSketchPipeline(**{k: components[k] for k in
                                 ("vae", "text_encoder", "tokenizer", "unet", "scheduler")})
    for model in models.values():
        model.eval()
    gaps = caption_sensitivity(pipe, timesteps=(950, 800), motions=tuple(TRANSLATIONS),
                               clips_per_motion=args.eval_clips)
    point = {"variant": name, "step": step, "clips_seen": step * args.batch, "loss": loss,
             "train_s": round(trained, 1),
             "gap": {row["timestep"]: row["gap"] for row in gaps["timesteps"]},
             "gap_by_motion": {row["timestep"]: row["gap_by_motion"]
                               for row in gaps["timesteps"]}}
    log(json.dumps({k: point[k] for k in ("variant", "step", "loss", "gap", "train_s")}))
    return point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/paired"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--every", type=int, default=20, help="measure every N steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--from-scratch", action="store_true",
                        help="a small fresh UNet and text encoder instead of the shipped model")
    parser.add_argument("--clips", type=int, default=1024, help="pool of clips (latents cached)")
    parser.add_argument("--eval-clips", type=int, default=6, help="held-out clips per motion")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    results = {name: run(name, paired, args, log)
               for name, paired in (("unpaired", False), ("paired", True))}
    (args.output / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    start = f"small fresh UNet {SMALL_UNET}" if args.from_scratch else "the shipped model"
    print(f"\n{start}, the four translations, batch {args.batch}, lr {args.lr}; direction "
          "gap = loss(opposite words) / loss(true words) - 1\n")
    print("| clips seen | unpaired t=950 | paired t=950 | unpaired t=800 | paired t=800 |")
    print("| --- | --- | --- | --- | --- |")
    for a, b in zip(results["unpaired"], results["paired"], strict=True):
        print(f"| {a['clips_seen']} | {100 * a['gap'][950]:+.1f} % | {100 * b['gap'][950]:+.1f} % "
              f"| {100 * a['gap'][800]:+.1f} % | {100 * b['gap'][800]:+.1f} % |")


if __name__ == "__main__":
    main()
