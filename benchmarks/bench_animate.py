"""End to end ``flipsketch animate`` on the default model: start, load, 25 steps, 10 frames, write.

Each repeat runs the real command twice in fresh processes, side by side: a first run on an
empty cache folder (the drawing is inverted), then a re-run of the same drawing with another
prompt and seed (its inversion comes from the cache). Prints one JSON object with the medians,
every wall time, the re-run / first-run ratio and the seconds each spent on the inversion.
The bar for the embedded model is 20 s on 2 CPU cores.

``--together`` measures sharing instead: one first run alone as the command runs it (its
OpenMP threads spin briefly: nothing else is running, ``flipsketch.openmp``) and one with them
sleeping (``OMP_WAIT_POLICY=PASSIVE``), then two first runs started together, once as the
command runs them (each sees the other, so both sleep) and once with OpenMP's spinning wait
forced (``ACTIVE``); it prints each pair's slower wall time over the lone run's (the bar:
within 2.3x).

``--profile`` prints where the time goes instead: a table of each phase's median seconds,
first run and re-run (start-up is the process's wall time before the command's own clock
starts: the interpreter, imports, Typer).

    python benchmarks/bench_animate.py [--model tiny] [--repeats 3]
    python benchmarks/bench_animate.py --profile
    python benchmarks/bench_animate.py --together
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flipsketch.openmp import WAIT_VARIABLES

SKETCH = Path(__file__).resolve().parents[1] / "src" / "flipsketch" / "examples" / "fish.png"


def command(model: str, prompt: str, seed: int, output: Path) -> list[str]:
    return [sys.executable, "-m", "flipsketch", "animate", str(SKETCH), prompt, "--model", model,
            "--seed", str(seed), "-o", str(output), "--json"]


def command_environ(**more: str) -> dict[str, str]:
    """This environment without a wait policy, so that each run chooses its own
    (``flipsketch.openmp``), plus ``more``."""
    return {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES} | more


def animate(model: str, prompt: str, seed: int, output: Path, cache: Path,
            environ: dict[str, str] | None = None) -> tuple[float, dict]:
    """Wall seconds of one ``flipsketch animate`` process and its ``--json`` summary."""
    started = time.perf_counter()
    done = subprocess.run(command(model, prompt, seed, output), check=True, capture_output=True,
                          text=True, env=command_environ(FLIPSKETCH_CACHE=str(cache),
                                                         **(environ or {})))
    return time.perf_counter() - started, json.loads(done.stdout)


def run_phases(wall: float, summary: dict) -> dict[str, float]:
    """A run's phases in seconds: the command's own timings, its wall time, and the start-up
    before the command's clock started."""
    timings = summary["timings"]
    return {**timings, "wall_s": wall, "startup_s": wall - timings["total_s"]}


def together(model: str, folder: Path, wait_policy: str | None) -> float:
    """Wall seconds until the slower of two first runs started at once finishes."""
    env = command_environ(**({"OMP_WAIT_POLICY": wait_policy} if wait_policy else {}))
    run_folder = folder / (wait_policy or "default")  # its own empty caches: first runs
    run_folder.mkdir()
    started = time.perf_counter()
    runs = [subprocess.Popen(command(model, "a fish swimming to the right", k,
                                     run_folder / f"{k}.gif"),
                             env={**env, "FLIPSKETCH_CACHE": str(run_folder / f"cache-{k}")},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for k in range(2)]
    for run in runs:
        if run.wait() != 0:
            raise SystemExit(run.stderr.read().decode())
    return time.perf_counter() - started


# The phases of a run in order, as ``animate --json`` reports them; the indented ones are
# parts of ``sampling_s``.
PHASES = {
    "start-up (interpreter, imports)": "startup_s",
    "checks (options, drawing, output)": "checks_s",
    "model load": "load_s",
    "prompt encoding": "prompts_s",
    "sketch inversion (or cache read)": "inversion_s",
    "denoising loop": "sampling_s",
    "  frame alignment (its target pass, forward and backward)": "alignment_s",
    "  reference and joint guided passes": "passes_s",
    "VAE decode": "decode_s",
    "post-process and write": "write_s",
}


def profile_table(first: list[dict], rerun: list[dict]) -> str:
    """Markdown: median seconds of each phase, first run and re-run."""
    def median(rows: list[dict], key: str) -> float:
        return statistics.median(row.get(key, 0.0) for row in rows)

    lines = ["| phase | first run (s) | re-run (s) |", "| --- | --- | --- |"]
    for name, key in [*PHASES.items(), ("whole run (wall)", "wall_s")]:
        lines.append(f"| {name} | {median(first, key):.2f} | {median(rerun, key):.2f} |")
    return "\n".join(lines)


def main_together(model: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        alone, _ = animate(model, "a fish swimming to the right", 0, folder / "alone.gif",
                           folder / "cache-alone")  # the command's own choice: it spins
        sleeping, _ = animate(model, "a fish swimming to the right", 0, folder / "sleep.gif",
                              folder / "cache-sleep", {"OMP_WAIT_POLICY": "PASSIVE"})
        pair = together(model, folder, None)  # the command's own choice: they see each other
        active = together(model, folder, "ACTIVE")
    print(json.dumps({"model": model, "alone_s": round(alone, 2),
                      "alone_sleeping_s": round(sleeping, 2),
                      "two_at_once_s": round(pair, 2),
                      "two_at_once_ratio": round(pair / alone, 2),
                      "two_at_once_spinning_s": round(active, 2),
                      "two_at_once_spinning_ratio": round(active / alone, 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="also print the seconds of each phase of a run")
    parser.add_argument("--together", action="store_true",
                        help="two runs at once against one alone (shared cores)")
    args = parser.parse_args()
    if args.together:
        return main_together(args.model)
    first, rerun = [], []
    inversion: dict[str, list[float]] = {"first": [], "rerun": []}
    phases: dict[str, list[dict]] = {"first": [], "rerun": []}
    with tempfile.TemporaryDirectory() as folder:
        for index in range(args.repeats):
            cache = Path(folder) / f"cache-{index}"  # empty: the first run inverts
            seconds, summary = animate(args.model, "a fish swimming to the right", 0,
                                       Path(folder) / f"first-{index}.gif", cache)
            assert summary["inversion_cached"] is False
            first.append(seconds)
            inversion["first"].append(summary["timings"]["inversion_s"])
            phases["first"].append(run_phases(seconds, summary))
            seconds, summary = animate(args.model, "a fish swimming to the left", 1,
                                       Path(folder) / f"rerun-{index}.gif", cache)
            assert summary["inversion_cached"] is True
            rerun.append(seconds)
            inversion["rerun"].append(summary["timings"]["inversion_s"])
            phases["rerun"].append(run_phases(seconds, summary))
            print(f"repeat {index + 1}: first run {first[-1]:.2f} s, re-run {rerun[-1]:.2f} s",
                  flush=True)
    if args.profile:
        print(profile_table(phases["first"], phases["rerun"]))
    median_first, median_rerun = statistics.median(first), statistics.median(rerun)
    print(json.dumps({"model": args.model, "median_s": round(median_first, 2),
                      "rerun_median_s": round(median_rerun, 2),
                      "rerun_ratio": round(median_rerun / median_first, 3),
                      "inversion_median_s": round(statistics.median(inversion["first"]), 2),
                      "rerun_inversion_median_s": round(statistics.median(inversion["rerun"]),
                                                        3),
                      "runs_s": [round(s, 2) for s in first],
                      "reruns_s": [round(s, 2) for s in rerun]}))


if __name__ == "__main__":
    main()
