"""Which tiny architecture can hear direction words? A small, fair experiment (issue 9, step 3).

Three UNets are trained the same way on the same reduced task (four subjects, the four
translations), from the same seed, with the shipped VAE and a fresh text encoder each:

- ``v1``: the first tiny model's layout (attention only at 8 x 8 and 4 x 4, no frame positions);
- ``v1+positions``: the same with sinusoidal frame positions in every temporal transformer;
- ``v2``: ModelScope's layout (attention at 16 x 16 and 8 x 8, none at 4 x 4) with positions.

Each is then measured by the two numbers the issue asks for: the direction gap of
``flipsketch eval captions`` (loss with the opposite direction's caption over the true one,
minus 1; 0 means the direction words change nothing) and text-only direction accuracy (the ink
centroid moves the prompted way; chance is 25 %). Results go to OUT/results.json and a
Markdown table on stdout.

    OMP_NUM_THREADS=2 python scripts/architecture_experiment.py -o runs/experiment

About an hour on 2 CPU cores with the defaults; ``--steps 2`` checks that it runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from flipsketch.api import SamplerSettings, load_pipeline
from flipsketch.evaluation.runs import caption_sensitivity, evaluate_text_motion
from flipsketch.models.tiny import (
    CONFIG_PATH,
    TINY_DIR,
    build_components,
    export_model,
    load_config,
)
from flipsketch.training.loop import LoopConfig, train_denoiser
from flipsketch.training.synth import TRANSLATIONS, SketchAnimator

V1 = dict(down_block_types=["DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"],
          up_block_types=["CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"])
V2 = dict(down_block_types=["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
          up_block_types=["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"])
VARIANTS = {
    "v1": dict(V1, frame_positions=0),
    "v1+positions": dict(V1, frame_positions=32),
    "v2": dict(V2, frame_positions=32),
}
# No subject here has a held-out translation pair (fish, cat, cloud and bird have).
SUBJECTS = ("ball", "star", "house", "car")
MOTIONS = tuple(TRANSLATIONS)


class TranslationClips(torch.utils.data.Dataset):
    """Item i: one of ``subjects`` making one of the four translations, fixed by (seed, i)."""

    def __init__(self, size: int, subjects: tuple[str, ...], seed: int):
        self.animator = SketchAnimator(size=128, num_frames=10, seed=seed)
        self.size, self.subjects, self.seed = size, subjects, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        subject = self.subjects[rng.integers(len(self.subjects))]
        motion = MOTIONS[rng.integers(len(MOTIONS))]
        clip = self.animator.render(subject, motion, rng)
        return {"frames": torch.from_numpy(clip.frames), "caption": clip.caption}


def run_variant(name: str, unet_settings: dict, args: argparse.Namespace) -> dict:
    config = load_config(CONFIG_PATH)
    config["model"]["unet"].update(unet_settings)
    components = build_components(config)  # every variant starts from the same seed
    from diffusers import AutoencoderKL

    components["vae"] = AutoencoderKL.from_pretrained(TINY_DIR, subfolder="vae")
    run_dir = args.output / name
    loop = LoopConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, warmup_steps=50,
                      caption_dropout=0.1, snr_gamma=5.0, ema_decay=None, cache_latents=True,
                      checkpoint_every=args.steps, keep_checkpoints=1, log_every=25,
                      timestep_sampling="high_noise", seed=0)
    for part in ("unet", "text_encoder"):
        components[part].requires_grad_(True)
    models = {"unet": components["unet"], "text_encoder": components["text_encoder"]}
    started = time.perf_counter()
    summary = train_denoiser(components, models, TranslationClips(args.clips, SUBJECTS, 0),
                             run_dir, loop)
    train_s = time.perf_counter() - started
    export = export_model({k: copy.deepcopy(v) for k, v in components.items()},
                          run_dir / "model")
    pipe = load_pipeline(str(export), device="cpu")
    captions = caption_sensitivity(pipe, timesteps=(950, 800), motions=MOTIONS,
                                   clips_per_motion=6)
    motion = evaluate_text_motion(pipe, seeds=args.seeds, subjects=SUBJECTS, motions=MOTIONS,
                                  settings=SamplerSettings(num_inference_steps=25))
    params = sum(p.numel() for p in components["unet"].parameters())
    return {"variant": name, "unet": unet_settings, "unet_params": params,
            "final_loss": summary["loss"], "train_s": round(train_s, 1),
            "direction_gap": {row["timestep"]: row["gap"] for row in captions["timesteps"]},
            "direction_gap_by_motion": {row["timestep"]: row["gap_by_motion"]
                                        for row in captions["timesteps"]},
            "text_direction_accuracy": motion["accuracy"],
            "by_motion": motion["by_motion"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/experiment"))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--clips", type=int, default=2000, help="pool of clips (latents cached)")
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.variants.split(","):
        results.append(run_variant(name, VARIANTS[name], args))
        (args.output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{args.steps} steps x batch {args.batch}, subjects {', '.join(SUBJECTS)}, "
          f"the four translations; seeds {args.seeds}\n")
    print("| variant | UNet params | final loss | direction gap t=950 | t=800 "
          "| text-only direction |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        gap = r["direction_gap"]
        print(f"| {r['variant']} | {r['unet_params'] / 1e6:.2f} M | {r['final_loss']:.4f} "
              f"| {_pct(gap, 950)} | {_pct(gap, 800)} "
              f"| {100 * r['text_direction_accuracy']:.0f} % |")


def _pct(gap: dict, t: int) -> str:
    value = gap.get(t, gap.get(str(t)))
    return "n/a" if value is None else f"{100 * value:+.1f} %"


if __name__ == "__main__":
    main()
