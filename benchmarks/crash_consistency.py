"""Hard kills, many of them: ``kill -9`` a real ``flipsketch batch`` at seeded random moments,
run it again, and count the runs whose OUTDIR is exactly an uninterrupted run's (issue 24).

The suite kills three times (tests/test_crash_consistency.py); this draws as many moments as
asked, with the same harness (tests/testing.py), on the shipped tiny model, and prints
one line per moment (ok, or the promises it broke), then the tally:

    python benchmarks/crash_consistency.py --moments 40 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from testing import (  # noqa: E402
    REPORT,
    batch_problems,
    draw_moments,
    environment,
    flipsketch_command,
    run_and_kill,
    run_to_end,
)

EXAMPLES = ROOT / "src" / "flipsketch" / "examples"
SETTINGS = ["--model", "tiny", "--steps", "4", "--frames", "4", "--size", "64"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moments", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        drawings = sorted(EXAMPLES.glob("*.png"))
        jobs = []
        for k in range(args.jobs):
            drawing = drawings[k % len(drawings)]
            shutil.copy(drawing, work / drawing.name)
            jobs.append({"sketch": drawing.name, "prompt": f"a {drawing.stem} moving",
                         "output": f"{k:02d}-{drawing.stem}.gif", "seed": k})
        manifest = work / "jobs.jsonl"
        manifest.write_text("".join(json.dumps(job) + "\n" for job in jobs))
        env = environment()

        def command(outdir: Path) -> list[str]:
            return flipsketch_command("batch", manifest, "-o", outdir, *SETTINGS)

        reference = work / "reference"
        started = time.monotonic()
        done = run_to_end(command(reference), cwd=work, env=env)
        if done.returncode != 0:
            sys.exit(f"the uninterrupted batch failed: {done.stderr}")
        seconds = [json.loads(line)["seconds"] for line in (reference / REPORT).open()]
        startup_s = time.monotonic() - started - sum(seconds)
        # While a job is in progress: before the first ends, or after the n-th, n < jobs.
        moments = draw_moments(random.Random(args.seed), args.moments, anchor="done ",
                               anchors=len(jobs) - 1, before_first_s=startup_s + seconds[0],
                               between_s=min(seconds))
        survived = killed_count = 0
        for k, moment in enumerate(moments):
            outdir = work / f"killed-{k}"
            killed = run_and_kill(command(outdir), moment, cwd=work, env=env)
            killed_count += killed.killed
            again = run_to_end(command(outdir), cwd=work, env=env)
            problems = batch_problems(outdir, reference)
            if again.returncode != 0:
                problems.insert(0, f"the run after the kill failed: {again.stderr.strip()}")
            what = "killed" if killed.killed else "ended first"
            print(f"kill {moment} ({what}): " + ("; ".join(problems) if problems else "ok"),
                  flush=True)
            survived += not problems
            shutil.rmtree(outdir)
        print(f"batch of {len(jobs)} jobs: {survived} of {len(moments)} kill moments left an "
              f"OUTDIR equal to an uninterrupted run's ({killed_count} runs killed, the others "
              f"ended before their moment)")


if __name__ == "__main__":
    main()
