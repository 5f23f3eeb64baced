"""``flipsketch batch`` against one ``flipsketch animate`` per drawing, and 1 against 2 processes.

Three ways to make the same N animations, each a real command in fresh processes, measured
side by side in one run:

- ``animate``: N separate ``flipsketch animate`` processes (each starts, loads the model,
  samples, writes);
- ``batch``: one ``flipsketch batch`` with an N-row manifest (one start, one model load);
- ``batch --processes 2``: the same through ``accelerate launch``, the jobs split over two
  processes (on the CPU: gloo, the cores shared out between them).

Prints one line per way, then one JSON object with wall seconds, jobs per minute, and the
speed-ups: animate's time / batch's (what loading once saves) and 1 process's / 2's.

    python benchmarks/bench_batch.py [--model tiny] [--jobs 6] [--steps 5] [--frames 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The drawings shipped with the package (example:NAME).
SKETCHES = Path(__file__).resolve().parents[1] / "src" / "flipsketch" / "examples"
PROMPTS = ["a fish swimming to the right", "a cat stretching", "a horse galloping",
           "a camel walking", "a cloud drifting", "a fish jumping"]


def run(command: list[str]) -> float:
    """Wall seconds of one command (which must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    sketches = sorted(SKETCHES.glob("*.png"))
    if not sketches:
        sys.exit(f"no sketches in {SKETCHES} (the example drawings shipped with flipsketch)")
    flipsketch = [sys.executable, "-m", "flipsketch"]
    # --no-cache: every way inverts every drawing (a drawing repeated in the manifest would
    # otherwise be a cache hit for one process and a miss for the other of two).
    options = ["--model", args.model, "--steps", str(args.steps), "--frames", str(args.frames),
               "--size", str(args.size), "--no-cache"]
    jobs = [(sketches[k % len(sketches)], PROMPTS[k % len(PROMPTS)], k)
            for k in range(args.jobs)]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        manifest = folder / "jobs.csv"
        manifest.write_text("sketch,prompt,seed\n" + "".join(
            f"{sketch},{prompt},{seed}\n" for sketch, prompt, seed in jobs))
        results["animate"] = sum(
            run([*flipsketch, "animate", str(sketch), prompt, "--seed", str(seed),
                 "-o", str(folder / f"animate-{seed}.gif"), *options])
            for sketch, prompt, seed in jobs)
        print(f"{args.jobs} x animate: {results['animate']:.1f} s", flush=True)
        for processes in (1, 2):
            name = f"batch-{processes}p"
            results[name] = run([*flipsketch, "batch", str(manifest), "-o",
                                 str(folder / name), "--processes", str(processes), *options])
            print(f"batch, {processes} process(es): {results[name]:.1f} s", flush=True)
    per_minute = {name: round(60 * args.jobs / seconds, 2) for name, seconds in results.items()}
    print(json.dumps({
        "model": args.model, "jobs": args.jobs, "steps": args.steps, "frames": args.frames,
        "size": args.size, "cpus": os.cpu_count(),
        "wall_s": {name: round(seconds, 2) for name, seconds in results.items()},
        "jobs_per_minute": per_minute,
        "batch_speedup": round(results["animate"] / results["batch-1p"], 2),
        "two_process_speedup": round(results["batch-1p"] / results["batch-2p"], 2),
    }))


if __name__ == "__main__":
    main()
