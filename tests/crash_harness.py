"""Crash consistency: SIGKILL a real command at a chosen moment, run it again, check the files.

SIGKILL is what a power cut, the OOM killer or ``kill -9`` looks like to a program: no handler
runs, no ``finally``, no cleanup. What survives is whatever was on disk at that moment, so
every promise of resumption ("at most the job in progress is lost") has to hold for a kill at
*any* instant. This module is shared by the short runs in ``tests/test_crash_consistency.py``
and the long ones in ``benchmarks/crash_consistency.py``:

* ``run_and_kill`` starts ``python -m flipsketch ...``, waits for a moment (``Moment``: the
  n-th line on stderr that starts with a prefix, then a delay) and sends SIGKILL;
  ``draw_moments`` draws such moments from a seeded generator, so a failing moment can be
  replayed.
* ``batch_problems`` lists every way an OUTDIR breaks ``flipsketch batch``'s promises once a
  run has finished: each job reported exactly once as finished, its outputs there and equal
  to the uninterrupted reference run's (same thread count, so the same bytes:
  ``tests/test_determinism.py``), report.jsonl parsing and agreeing with the files, and
  nothing else left behind (no temporary, no part of a report, no output moved aside).

It uses the standard library only (no pytest), so the benchmark can import it.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPORT = "report.jsonl"  # flipsketch.batch.REPORT, kept literal: the file is the contract


@dataclass(frozen=True)
class Moment:
    """When to kill: ``delay_s`` after the ``count``-th stderr line starting with ``after``
    (``count`` 0: after the start of the process)."""

    after: str = ""
    count: int = 0
    delay_s: float = 0.0

    def __str__(self) -> str:
        anchor = f"line {self.count} '{self.after}...'" if self.count else "start"
        return f"{self.delay_s:.3f} s after {anchor}"


@dataclass
class Killed:
    """What a run that was meant to be killed did."""

    moment: Moment
    killed: bool  # False: it finished (or failed) before the moment came
    returncode: int
    stderr: str
    seconds: float


def environment(**env: str) -> dict[str, str]:
    """The child's environment: offline, OpenMP not spinning, this process's thread count
    (so that every run computes alike and outputs compare byte for byte), unbuffered stderr
    (the moments are read from it), no line wrapping."""
    import torch

    threads = str(torch.get_num_threads())
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1",
            "COLUMNS": "1000", **env}


def flipsketch(*args: str | os.PathLike) -> list[str]:
    return [sys.executable, "-m", "flipsketch", *map(os.fspath, args)]


def run_to_end(command: list[str], *, cwd: Path, env: dict[str, str],
               timeout_s: float = 600) -> subprocess.CompletedProcess:
    """A run that is not interrupted."""
    return subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout_s)


def run_and_kill(command: list[str], moment: Moment, *, cwd: Path, env: dict[str, str],
                 timeout_s: float = 600) -> Killed:
    """Start ``command``, SIGKILL it at ``moment``; a run that ends first is reported as not
    killed (``killed`` False), which is a moment wasted, not a failure."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:  # drained by a thread: a full pipe must never block the process
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    reached = moment.count == 0
    deadline = started + timeout_s
    ended = False
    while not reached and not ended:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            raise TimeoutError(f"{moment} never came in {timeout_s} s:\n{''.join(seen)}") from None
        if line is None:
            ended = True
            break
        seen.append(line)
        reached = sum(s.startswith(moment.after) for s in seen) >= moment.count
    killed = False
    if not ended:
        try:
            process.wait(timeout=moment.delay_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            killed = True
    process.wait(timeout=timeout_s)
    reader.join(timeout=timeout_s)
    while (line := lines.get_nowait() if not lines.empty() else None) is not None:
        seen.append(line)
    return Killed(moment, killed, process.returncode, "".join(seen),
                  time.monotonic() - started)


def draw_moments(rng: random.Random, count: int, *, anchor: str, anchors: int,
                 before_first_s: float, between_s: float) -> list[Moment]:
    """``count`` moments spread over a run that prints ``anchors`` lines starting with
    ``anchor`` (one per finished job): before the first (from the start of the process,
    uniform over ``before_first_s``) or after the n-th (uniform over ``between_s``, the time
    one job takes), each equally likely."""
    moments = []
    for _ in range(count):
        n = rng.randrange(anchors + 1)
        span = before_first_s if n == 0 else between_s
        moments.append(Moment(anchor if n else "", n, round(rng.uniform(0, span), 3)))
    return moments


# -- batch -------------------------------------------------------------------------------------
def temporaries(folder: Path) -> list[Path]:
    """What a write in progress leaves: ``atomic_path``'s ``.NAME.XXXX.tmp.SUFFIX``, an
    output moved aside while its replacement goes in (``.NAME.XXXX.old``), a staging folder
    (``.staging-*``)."""
    return sorted(p for p in folder.rglob(".*")
                  if ".tmp" in p.name or p.name.endswith(".old")
                  or p.name.startswith(".staging-"))


def every_file(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, relative, POSIX."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def batch_problems(outdir: Path, reference: Path) -> list[str]:
    """Why ``outdir``, after a batch that finished, is not what the uninterrupted batch in
    ``reference`` left; empty when it is.

    Checked: report.jsonl parses, one line per job of the reference, in job order; every job
    finished (done or skipped) with the reference's fingerprint and outputs; every output
    there, byte for byte the reference's; nothing else in OUTDIR (no temporaries, no report
    parts, no leftover state folder, no output twice under another name).
    """
    problems = []
    try:
        lines = (outdir / REPORT).read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]
    except (OSError, ValueError) as exc:
        return [f"{REPORT} unreadable: {exc}"]
    expected = [json.loads(line) for line in (reference / REPORT).read_text().splitlines()]
    if [r.get("job") for r in records] != [r["job"] for r in expected]:
        problems.append(f"jobs reported {[r.get('job') for r in records]}, expected "
                        f"{[r['job'] for r in expected]}, each once")
    for record, wanted in zip(records, expected, strict=False):
        job = f"job {wanted['job']} ({wanted['output']})"
        if record.get("status") not in ("done", "skipped"):
            problems.append(f"{job}: status {record.get('status')!r}: {record.get('error')}")
        for key in ("output", "fingerprint", "outputs"):
            if record.get(key) != wanted[key]:
                problems.append(f"{job}: {key} {record.get(key)!r}, expected {wanted[key]!r}")
        for name in wanted["outputs"]:
            path, good = outdir / name, reference / name
            if not path.is_file():
                problems.append(f"{job}: output {name} missing")
            elif path.read_bytes() != good.read_bytes():
                problems.append(f"{job}: output {name} differs from the uninterrupted run's "
                                f"({path.stat().st_size} bytes, expected {good.stat().st_size})")
    left = every_file(outdir) - every_file(reference)
    if left:
        problems.append(f"left behind: {sorted(left)}")
    missing = every_file(reference) - every_file(outdir)
    if missing:
        problems.append(f"missing: {sorted(missing)}")
    return problems
