"""Seconds per training clip of the tiny base model: today's settings against the new ones.

Each run trains the tiny model as ``flipsketch train base`` does (``train_base`` on the config:
the shipped VAE, a fresh UNet and text encoder, synthetic clips) for 2 x STEPS steps on a pool
of STEPS x batch clips, in a fresh process of its own, with every step profiled
(``LoopConfig.profile_steps``). Steps 2..STEPS see new clips (drawn and VAE-encoded: the first
pass over the pool, which is every step of a short run or of a resumed one, whose latent cache
starts empty); steps STEPS+1..2 STEPS-1 see clips whose latents are cached. The first step
(allocations) and the last one (checkpoint and export) are left out. Runs alternate old, new,
old, new, ... so both see the same machine load; the medians over repeats are compared.

"old" is tiny.yaml's base stage as it was (the VAE encoding all 40 frames of a batch at once);
"new" is tiny.yaml as it is. Both run the current loop, so its fused AdamW and multi-tensor EMA
(about 1 % of a step, measured apart in the model card) are in both columns. Prints a line per
run, the section tables (where a step's time goes) and the ratio line:

    python benchmarks/bench_training.py [--steps 4] [--repeats 2] [--config tiny.yaml]
        [--profile-out DIR]

``--config`` takes another training config (the tests pass a small one); ``--profile-out``
keeps each variant's last profile (sections, operators, trace) there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Today's settings, as changes to the config's base stage: what "new" is compared against.
VARIANTS: dict[str, dict] = {
    "old": {"vae_chunk": 0},
    "new": {},
}


def run_child(config: Path, changes: dict, steps: int, out: Path) -> None:
    """Train 2 x ``steps`` steps in this process; the profile lands in ``out/profile``."""
    from flipsketch.models.tiny import load_config
    from flipsketch.training.base import train_base

    settings = load_config(config)
    base = settings["stages"]["base"]
    base.update(changes, clips=steps * int(base["batch_size"]), profile_steps=2 * steps,
                checkpoint_every=10**6, log_every=10**6, export_every=None)
    train_base(settings, out, steps=2 * steps)


def per_clip(summary: dict, steps: int) -> tuple[float, float]:
    """Mean seconds per clip on new clips (steps 2..steps) and cached ones (steps+1..2 steps-1)."""
    rows, batch = summary["per_step"], summary["batch_size"]
    new = [r["total"] for r in rows[1:steps]]
    cached = [r["total"] for r in rows[steps:2 * steps - 1]]
    return statistics.mean(new) / batch, statistics.mean(cached) / batch


def measure(name: str, config: Path, steps: int, folder: Path) -> dict:
    """One run of variant ``name`` in a fresh process (allocator, caches and threads start
    equal for every run); returns its profile summary."""
    out = folder / f"{name}-{time.monotonic_ns()}"
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    subprocess.run([sys.executable, __file__, "--child", name, "--config", str(config),
                    "--steps", str(steps), "--out", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    summary = json.loads((out / "profile" / "sections.json").read_text())
    summary["profile_dir"] = str(out / "profile")
    return summary


def main() -> None:
    from flipsketch.models.tiny import CONFIG_PATH

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4,
                        help="Steps on new clips, then as many on cached ones (at least 2).")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--config", type=Path, default=CONFIG_PATH)
    parser.add_argument("--profile-out", type=Path)
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step of a run is left out)")
    if args.child:
        run_child(args.config, VARIANTS[args.child], args.steps, args.out)
        return

    from flipsketch.training.profiling import format_sections, legend, mean_sections

    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.2f} at start; {args.steps} steps on "
          f"new clips then {args.steps} on cached ones per run", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name in VARIANTS:
                summary = measure(name, args.config, args.steps, Path(tmp))
                results[name].append(summary)
                new, cached = per_clip(summary, args.steps)
                print(f"{name} run {repeat + 1}: {new:.3f} s per new clip, "
                      f"{cached:.3f} s per cached clip", flush=True)
        if args.profile_out:
            for name, runs in results.items():
                target = args.profile_out / name
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(runs[-1]["profile_dir"], target)

    medians = {name: [statistics.median(per_clip(s, args.steps)[k] for s in runs)
                      for k in (0, 1)] for name, runs in results.items()}
    batch = results["new"][0]["batch_size"]
    for name, runs in results.items():
        rows = [row for s in runs for row in s["per_step"]]
        new_rows = [r for s in runs for r in s["per_step"][1:args.steps]]
        cached_rows = [r for s in runs for r in s["per_step"][args.steps:2 * args.steps - 1]]
        assert rows  # every run profiled its steps
        print(f"\n{name}: where a step's time goes (batch {batch}, mean over "
              f"{len(runs)} runs)\n")
        print(format_sections({"new clips": mean_sections(new_rows),
                               "cached clips": mean_sections(cached_rows)}, batch))
    print(legend())
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    for name, (new, cached) in medians.items():
        print(f"{name}: {new:.3f} s per new clip, {cached:.3f} s per cached clip (median)")
    (old_new, old_cached), (new_new, new_cached) = medians["old"], medians["new"]
    print(f"ratio old/new: {old_new / new_new:.2f}x on new clips, "
          f"{old_cached / new_cached:.2f}x on cached clips")


if __name__ == "__main__":
    main()
