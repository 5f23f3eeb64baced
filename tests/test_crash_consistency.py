"""``kill -9`` at seeded random moments of a real ``flipsketch batch``, then the same command
again: at most the job in progress is lost, and what is on disk afterwards is exactly what an
uninterrupted run leaves (tests/testing.py checks it byte for byte).

Three moments here, to keep the suite short; ``benchmarks/crash_consistency.py`` draws many
more with the same harness and records how many survived.
"""

from __future__ import annotations

import json
import shutil

import pytest

from testing import environment, flipsketch_command, kill_batch_trials, shared_sketch

QUICK = ["--steps", "2", "--frames", "3", "--size", "32"]
JOBS = [
    {"sketch": "fish.png", "prompt": "a fish swimming", "output": "fish.gif", "seed": 1},
    {"sketch": "horse.png", "prompt": "a horse galloping", "output": "horse.webp", "seed": 2},
    {"sketch": "fish.png", "prompt": "a fish diving", "output": "dive/fish.gif", "seed": 3},
]


@pytest.mark.slow  # real batches killed and run again
def test_batch_killed_at_random_moments_finishes_as_if_never_killed(tiny_model_dir, tmp_path):
    for job in JOBS:
        shutil.copy(shared_sketch(job["sketch"]), tmp_path / job["sketch"])
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(job) + "\n" for job in JOBS))
    env = environment()

    def command(outdir):
        return flipsketch_command("batch", manifest, "-o", outdir, "--model", tiny_model_dir,
                                  *QUICK)

    trials = list(kill_batch_trials(command, tmp_path, env, count=2, seed=24))
    for trial in trials:
        state = "killed" if trial.killed else "it ended first"
        assert trial.problems == [], f"kill {trial.moment} ({state})"
    assert any(t.killed for t in trials), "every run ended first: the moments are too late"
