"""Seconds per training clip of the tiny base model: today's settings against the new ones.

Each run trains the tiny model as ``flipsketch train base`` does (``train_base`` on the config:
the shipped VAE, a fresh UNet and text encoder, synthetic clips) on a pool of STEPS x batch
clips, in a fresh process of its own, with every step profiled (``LoopConfig.profile_steps``),
and measures three kinds of step:

- new clips: steps 2..STEPS, the first pass over the pool (each clip drawn and encoded);
- cached clips: steps STEPS+1..2 STEPS-1, whose latents are in the cache;
- resumed: the run stops at step 2 STEPS (checkpointed) and is resumed for STEPS + 1 more
  steps, in a new process as a CPU run is whenever the machine was needed; its steps 2..STEPS
  are its first pass over the pool again. That is what most steps of a CPU run that is
  stopped and resumed every hour or two are: tiny.yaml's pool of 4,000 clips takes 1,000 steps.

The first step of a process (allocations) and the last one (checkpoint and export) are left
out. The steps are timed by the loop's section timers alone (``profile_operators`` False):
torch.profiler would slow the steps it times, and parsing its trace took longer than the steps;
``--operators`` runs it too. Runs alternate old, new, old, new, ... so both see the same
machine load; the medians over repeats are compared. The cached steps run the same code in
both variants: their ratio shows how much the machine's load moved the numbers.

"old" is tiny.yaml's base stage as it was: the VAE encoding all 40 frames of a batch at once,
the latent cache in memory only, OpenMP threads that sleep at once. "new" is tiny.yaml as it
is (4 frames per VAE call, the cache kept in RUN_DIR/latents) with the wait the command line
chooses (``flipsketch.openmp``: spinning briefly on free cores). Both run the current loop, so
its fused AdamW and multi-tensor EMA (about 1 % of a step, measured apart in the model card)
are in both. Prints a line per run, the section tables (where a step's time goes) and the
ratio line:

    python benchmarks/bench_training.py [--steps 4] [--repeats 2] [--config tiny.yaml]
        [--profile-out DIR] [--operators]

``--config`` takes another training config (the tests pass a small one); ``--profile-out``
keeps each variant's last profile there (sections; with ``--operators`` the operator table and
trace too).
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

from flipsketch.openmp import WAIT_VARIABLES, choose_wait_policy

# Today's settings, as changes to the config's base stage: what "new" is compared against.
VARIANTS: dict[str, dict] = {
    "old": {"vae_chunk": 0, "store_latents": False},
    "new": {},
}
KINDS = ("new clips", "cached clips", "resumed")


def run_child(config: Path, changes: dict, steps: int, out: Path, resume: bool,
              operators: bool) -> None:
    """Train this process's part of a run: 2 x ``steps`` steps, or with ``resume`` the
    ``steps`` + 1 after them; the profile lands in ``out/profile``."""
    from flipsketch.models.tiny import load_config
    from flipsketch.training.base import train_base

    settings = load_config(config)
    base = settings["stages"]["base"]
    base.update(changes, clips=steps * int(base["batch_size"]),
                profile_steps=steps + 1 if resume else 2 * steps, profile_operators=operators,
                checkpoint_every=10**6, log_every=10**6, export_every=None)
    train_base(settings, out, resume=resume, steps=3 * steps + 1 if resume else 2 * steps)


def step_rows(run: dict, steps: int) -> dict[str, list[dict]]:
    """The profiled steps of one run by kind (see the module docstring)."""
    first, resumed = run["per_step"], run["resumed"]["per_step"]
    return {"new clips": first[1:steps], "cached clips": first[steps:2 * steps - 1],
            "resumed": resumed[1:steps]}


def per_clip(run: dict, steps: int) -> dict[str, float]:
    """Mean seconds per clip of each kind of step."""
    return {kind: statistics.mean(r["total"] for r in rows) / run["batch_size"]
            for kind, rows in step_rows(run, steps).items()}


def measure(name: str, config: Path, steps: int, folder: Path, operators: bool) -> dict:
    """One run of variant ``name``, started and resumed in fresh processes (allocator, caches
    and threads start equal for every run); returns its profile summary, the resumed part's
    under ``resumed``."""
    out = folder / f"{name}-{time.monotonic_ns()}"
    env = dict(os.environ)
    if name == "old" and not any(v in env for v in WAIT_VARIABLES):
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # as `flipsketch train` ran until 2026-12-08
    choose_wait_policy(env)  # "new": as the command chooses; a policy the user set holds
    summaries = []
    for resume in (False, True):
        subprocess.run([sys.executable, __file__, "--child", name, "--config", str(config),
                        "--steps", str(steps), "--out", str(out),
                        *(["--resume"] if resume else []),
                        *(["--operators"] if operators else [])],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        profile = out / ("profile-resumed" if resume else "profile-first")
        (out / "profile").rename(profile)
        summaries.append(json.loads((profile / "sections.json").read_text()))
    return {**summaries[0], "resumed": summaries[1], "profile_dir": str(out)}


def main() -> None:
    from flipsketch.models.tiny import CONFIG_PATH

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4,
                        help="Steps on new clips, then as many on cached ones (at least 2).")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--config", type=Path, default=CONFIG_PATH)
    parser.add_argument("--profile-out", type=Path)
    parser.add_argument("--operators", action="store_true",
                        help="torch.profiler in every run too (slower; operator tables and "
                             "traces for --profile-out)")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step of a run is left out)")
    if args.child:
        run_child(args.config, VARIANTS[args.child], args.steps, args.out, args.resume,
                  args.operators)
        return

    from flipsketch.training.profiling import format_sections, legend, mean_sections

    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.2f} at start; per run {args.steps} "
          f"steps on new clips, {args.steps} on cached ones, then resumed for {args.steps + 1}",
          flush=True)
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name in VARIANTS:
                run = measure(name, args.config, args.steps, Path(tmp), args.operators)
                results[name].append(run)
                costs = per_clip(run, args.steps)
                print(f"{name} run {repeat + 1}: " + ", ".join(
                    f"{costs[kind]:.3f} s per clip ({kind})" for kind in KINDS), flush=True)
        if args.profile_out:
            for name, runs in results.items():
                for part in ("profile-first", "profile-resumed"):
                    target = args.profile_out / name / part
                    shutil.rmtree(target, ignore_errors=True)
                    shutil.copytree(Path(runs[-1]["profile_dir"]) / part, target)

    batch = results["new"][0]["batch_size"]
    for name, runs in results.items():
        by_kind = {kind: [row for run in runs for row in step_rows(run, args.steps)[kind]]
                   for kind in KINDS}
        print(f"\n{name}: where a step's time goes (batch {batch}, mean over {len(runs)} "
              f"runs; share and per clip of the last column)\n")
        print(format_sections({kind: mean_sections(rows) for kind, rows in by_kind.items()},
                              batch))
    print(legend())
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    medians = {name: {kind: statistics.median(per_clip(run, args.steps)[kind] for run in runs)
                      for kind in KINDS} for name, runs in results.items()}
    for name, costs in medians.items():
        print(f"{name} (median): " + ", ".join(f"{costs[kind]:.3f} s per clip ({kind})"
                                               for kind in KINDS))
    old, new = medians["old"], medians["new"]
    print("ratio old/new: " + ", ".join(f"{old[kind] / new[kind]:.2f}x on {kind}"
                                        for kind in KINDS))


if __name__ == "__main__":
    main()
