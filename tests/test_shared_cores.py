"""The command line waits passively on shared cores (issue 22): OpenMP threads that spin while
they wait made two torch processes on the same two cores each run 5-10x slower.

The policy only counts if it is in the environment before torch loads, so these run a fresh
interpreter; the speed itself is measured by ``benchmarks/bench_animate.py --together``.
"""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import os, sys
import flipsketch.cli
loaded_before = "torch" in sys.modules
import torch  # noqa: F401  what a command does once it runs
print(os.environ.get("OMP_WAIT_POLICY"), loaded_before)
"""


def probe(**environ: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | environ
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True)
    return done.stdout.split()


def test_the_cli_sets_passive_waiting_before_torch_loads():
    assert probe() == ["PASSIVE", "False"]


def test_a_wait_policy_the_user_set_wins():
    assert probe(OMP_WAIT_POLICY="ACTIVE") == ["ACTIVE", "False"]
