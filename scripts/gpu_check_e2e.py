"""The end-to-end part of scripts/gpu_check.sh: a random-weight model folder, and the checks.

    python scripts/gpu_check_e2e.py save-model ARCH DEVICE FOLDER
    python scripts/gpu_check_e2e.py summary E2E_DIR LABEL...

``save-model`` builds one of ``benchmarks/bench_sampler.py``'s architectures with random
weights (``modelscope-full``: ModelScope T2V 1.7B's; ``tiny``: a few MB) on DEVICE, in the
architecture's dtype there (bf16 on CUDA for the full size), and saves it as a diffusers model
folder, which ``flipsketch animate --model FOLDER`` then loads like any downloaded model.

``summary`` reads the ``--json`` outputs gpu_check.sh kept in E2E_DIR/LABEL/ (cache-1,
cache-2, paper, best-of-3, batch), prints one line per command with its seconds, checks what
each must show (the first run inverts and the re-run reuses the inversion; best-of-3 ranks 3
samples and writes 1; the batch does its 2 jobs; every output exists) and exits 1 naming
each problem.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANIMATE_RUNS = ("cache-1", "cache-2", "paper", "best-of-3")


def save_model(arch_name: str, device: str, folder: str) -> None:
    import torch

    spec = importlib.util.spec_from_file_location("bench_sampler",
                                                  ROOT / "benchmarks" / "bench_sampler.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up there
    spec.loader.exec_module(bench)

    from flipsketch.devices import resolve_dtype
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    arch = bench.ARCHS[arch_name]
    parts = bench.random_components(arch, device)
    dtype = resolve_dtype(arch.dtype, torch.device(device))
    for name in ("unet", "vae", "text_encoder"):
        parts[name] = parts[name].to(dtype)
    FlipSketchPipeline(**parts).save_pretrained(folder)
    print(f"random-weight {arch_name} ({dtype}) saved to {folder}")


def summary(root: Path, labels: list[str]) -> int:
    problems: list[str] = []

    def read(label: str, name: str) -> dict | None:
        try:
            return json.loads((root / label / f"{name}.json").read_text())
        except (OSError, ValueError):
            problems.append(f"{label}: {name} wrote no JSON summary (see the log)")
            return None

    def check(label: str, ok: bool, what: str) -> None:
        if not ok:
            problems.append(f"{label}: {what}")

    for label in labels:
        runs = {name: read(label, name) for name in ANIMATE_RUNS}
        for name, run in runs.items():
            if run is None:
                continue
            check(label, all(Path(p).is_file() for p in run["outputs"]), f"{name}: no output")
            t = run["timings"]
            print(f"{label} {name}: {t['total_s']:.1f} s in all (inversion "
                  f"{t['inversion_s']:.2f} s, sampling {t['sampling_s']:.1f} s, decoding "
                  f"{t.get('decode_s', 0):.2f} s), inversion cached: {run['inversion_cached']}")
        first, again = runs["cache-1"], runs["cache-2"]
        if first and again:
            check(label, first["inversion_cached"] is False, "the first run hit the cache")
            check(label, again["inversion_cached"] is True, "the re-run missed the cache")
        best = runs["best-of-3"]
        if best:
            samples = best["ranking"]["samples"]
            check(label, len(samples) == 3 and len(best["outputs"]) == 1,
                  "best-of-3 did not rank 3 samples and keep 1")
            print(f"{label} best-of-3 scores: "
                  + ", ".join(f"seed {s['seed']} {s['score']:.3f}" for s in samples))
        batch = read(label, "batch")
        if batch is not None:
            check(label, batch["done"] == 2 and batch["failed"] == 0, "batch: not 2 jobs done")
            check(label, all((root / label / "batch" / job["output"]).is_file()
                             for job in batch["jobs"]), "batch: an output is missing")
            print(f"{label} batch: {batch['done']} done, {batch['failed']} failed in "
                  f"{batch['seconds']:.1f} s")
    for problem in problems:
        print(f"problem: {problem}")
    print(f"end to end: {'FAILED' if problems else 'passed'}")
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "save-model":
        save_model(*argv[1:])
        return 0
    if len(argv) >= 2 and argv[0] == "summary":
        return summary(Path(argv[1]), argv[2:])
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
