"""The command line spins alone and sleeps on shared cores (issue 22): OpenMP threads that sleep
at once made a lone run 1.6x slower, threads that spin made two torch processes on the same
two cores each run 3-6x slower (``flipsketch.openmp``).

The policy only counts if it is in the environment before torch loads, so the end-to-end
checks run a fresh interpreter; the speed itself is measured by ``benchmarks/bench_animate.py
--together``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flipsketch.openmp import (
    SPIN_COUNT,
    WAIT_VARIABLES,
    choose_wait_policy,
    others_runnable,
    runnable_now,
)

PROBE = """
import os, sys
import flipsketch.cli
loaded_before = "torch" in sys.modules
import torch  # noqa: F401  what a command does once it runs
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"), loaded_before)
"""

def probe(**environ: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES} | environ
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout.split()


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="reads /proc/loadavg")
def test_beside_a_busy_process_the_cli_sleeps_before_torch_loads():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        # A thread for every core the machine has: any other busy process leaves too few.
        assert probe(OMP_NUM_THREADS=str(os.cpu_count())) == ["PASSIVE", "None", "False"]
    finally:
        busy.kill()
        busy.wait()


def test_a_wait_policy_the_user_set_wins():
    assert probe(OMP_WAIT_POLICY="ACTIVE") == ["ACTIVE", "None", "False"]
    assert probe(GOMP_SPINCOUNT="5") == ["None", "5", "False"]


def test_free_cores_spin_briefly_busy_or_unknown_ones_sleep():
    cores = os.cpu_count()
    idle: dict[str, str] = {"OMP_NUM_THREADS": str(cores)}
    assert choose_wait_policy(idle, others=lambda: 0) == "spin"
    assert idle["GOMP_SPINCOUNT"] == SPIN_COUNT and "OMP_WAIT_POLICY" not in idle
    for others in (lambda: 1, lambda: None):  # one more busy thread than cores; can't tell
        shared: dict[str, str] = {"OMP_NUM_THREADS": str(cores)}
        assert choose_wait_policy(shared, others=others) == "sleep"
        assert shared["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in shared
    few = {"OMP_NUM_THREADS": "1"}  # one thread, the rest of the cores for the others
    assert choose_wait_policy(few, others=lambda: cores - 1) == "spin"
    mine = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert choose_wait_policy(mine, others=lambda: 0) == "user" and mine == {
        "OMP_WAIT_POLICY": "ACTIVE"}


def test_the_runnable_count_is_read_from_loadavg_and_blips_do_not_count(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.99 2.45 2.30 3/115 15513\n")
    assert runnable_now(loadavg) == 3
    assert runnable_now(tmp_path / "missing") is None
    loadavg.write_text("garbage\n")
    assert runnable_now(loadavg) is None
    readings = iter([1, 4, 1])  # this process alone, then a blip of three others
    assert others_runnable(read=lambda: next(readings), interval_s=0) == 0
    readings = iter([3, 3, 1])  # two others busy most of the time
    assert others_runnable(read=lambda: next(readings), interval_s=0) == 2
    assert others_runnable(read=lambda: None) is None
