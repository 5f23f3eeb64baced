"""``kill -9`` at seeded random moments of a real ``flipsketch batch``, then the same command
again: at most the job in progress is lost, and what is on disk afterwards is exactly what an
uninterrupted run leaves (tests/testing.py checks it byte for byte).

Three moments here, to keep the suite short; ``benchmarks/crash_consistency.py`` draws many
more with the same harness and records how many survived.
"""

from __future__ import annotations

import json
import random
import shutil
import time

from testing import (
    REPORT,
    batch_problems,
    draw_moments,
    environment,
    flipsketch_command,
    run_and_kill,
    run_to_end,
    shared_sketch,
    temporaries,
)

QUICK = ["--steps", "2", "--frames", "3", "--size", "32"]
JOBS = [
    {"sketch": "fish.png", "prompt": "a fish swimming", "output": "fish.gif", "seed": 1},
    {"sketch": "horse.png", "prompt": "a horse galloping", "output": "horse.webp", "seed": 2},
    {"sketch": "fish.png", "prompt": "a fish diving", "output": "dive/fish.gif", "seed": 3},
]


def test_batch_killed_at_random_moments_finishes_as_if_never_killed(tiny_model_dir, tmp_path):
    for job in JOBS:
        shutil.copy(shared_sketch(job["sketch"]), tmp_path / job["sketch"])
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(job) + "\n" for job in JOBS))
    env = environment()

    def command(outdir):
        return flipsketch_command("batch", manifest, "-o", outdir, "--model", tiny_model_dir,
                                  *QUICK)

    reference = tmp_path / "reference"
    started = time.monotonic()
    done = run_to_end(command(reference), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    seconds = [json.loads(line)["seconds"] for line in (reference / REPORT).open()]
    startup_s = time.monotonic() - started - sum(seconds)
    # Moments while a job is in progress: before the first job ends or after the n-th, n <
    # the job count (a kill after the last leaves nothing to resume).
    moments = draw_moments(random.Random(24), 3, anchor="done ", anchors=len(JOBS) - 1,
                           before_first_s=startup_s + seconds[0], between_s=min(seconds))
    kills = 0
    for k, moment in enumerate(moments):
        outdir = tmp_path / f"killed-{k}"
        killed = run_and_kill(command(outdir), moment, cwd=tmp_path, env=env)
        kills += killed.killed
        again = run_to_end(command(outdir), cwd=tmp_path, env=env)
        assert again.returncode == 0, f"after a kill {moment}: {again.stderr}"
        assert batch_problems(outdir, reference) == [], (
            f"kill {moment} ({'killed' if killed.killed else 'it ended first'})")
        assert temporaries(outdir) == []
    assert kills >= 1, "every run ended before its moment: the moments are drawn too late"
