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
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from testing import environment, flipsketch_command, kill_batch_trials  # noqa: E402

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

        survived = killed_count = 0
        trials = kill_batch_trials(command, work, env, args.moments, args.seed)
        for k, trial in enumerate(trials):
            killed_count += trial.killed
            survived += not trial.problems
            what = "killed" if trial.killed else "ended first"
            print(f"kill {trial.moment} ({what}): " + ("; ".join(trial.problems) or "ok"),
                  flush=True)
            shutil.rmtree(work / f"killed-{k}")
        moments = args.moments
        print(f"batch of {len(jobs)} jobs: {survived} of {moments} kill moments left an "
              f"OUTDIR equal to an uninterrupted run's ({killed_count} runs killed, the others "
              f"ended before their moment)")


if __name__ == "__main__":
    main()
