"""Where a run's time goes (issue 22): ``animate --json`` reports each phase, and
``benchmarks/bench_animate.py --profile`` tabulates them. The table is only worth reading if
its phases account for the run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from testing import shared_sketch

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps", "4", "--frames", "4", "--size", "64"]


def load_bench():
    """benchmarks/bench_animate.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_animate",
                                                  ROOT / "benchmarks" / "bench_animate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_phases_of_a_run_add_up_to_the_whole_run(cli, tiny_model_dir, tmp_path):
    result = cli("animate", shared_sketch("fish.png"), "a fish swimming to the right",
                 "--model", tiny_model_dir, "-o", tmp_path / "fish.gif", "--json", *FAST)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    timings = summary["timings"]
    bench = load_bench()
    top = [key for name, key in bench.PHASES.items()
           if not name.startswith(" ") and key != "startup_s"]  # the command's own phases
    parts = [key for name, key in bench.PHASES.items() if name.startswith(" ")]
    assert set(top) | set(parts) <= set(timings), "a phase the table names is not reported"
    assert all(timings[key] >= 0 for key in top + parts)
    assert abs(sum(timings[key] for key in top) - timings["total_s"]) <= 0.1 * timings["total_s"]
    # The denoising loop is its passes plus the DDIM steps between them.
    within = sum(timings[key] for key in parts)
    assert 0.5 * timings["sampling_s"] <= within <= timings["sampling_s"]

    # The benchmark's table: start-up is the wall time before the command's clock started.
    run = bench.run_phases(timings["total_s"] + 1.0, summary)
    table = bench.profile_table([run], [run])
    assert "| start-up (interpreter, imports) | 1.00 | 1.00 |" in table
    assert len(table.splitlines()) == 2 + len(bench.PHASES) + 1
