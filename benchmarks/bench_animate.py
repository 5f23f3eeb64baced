"""End to end ``flipsketch animate`` on the default model: start, load, 25 steps, 10 frames, write.

Runs the real command in fresh processes (``--repeats`` times) and prints one JSON object with
the median and every wall time. The bar for the embedded model is 20 s on 2 CPU cores.

    python benchmarks/bench_animate.py [--model tiny] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SKETCH = Path(__file__).resolve().parents[2] / "shared" / "sketches" / "fish.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(args.repeats):
            output = Path(folder) / f"fish-{index}.gif"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "flipsketch", "animate", str(SKETCH),
                            "a fish swimming to the right", "--model", args.model,
                            "-o", str(output)], check=True, capture_output=True)
            seconds.append(time.perf_counter() - started)
            print(f"run {index + 1}: {seconds[-1]:.2f} s", flush=True)
    print(json.dumps({"model": args.model, "median_s": round(statistics.median(seconds), 2),
                      "runs_s": [round(s, 2) for s in seconds]}))


if __name__ == "__main__":
    main()
