"""How torch's OpenMP threads wait between operations, chosen before torch loads (issue 22).

Between two parallel operations an OpenMP thread either spins (the next operation starts at
once) or sleeps (its core goes to whoever else needs it). A UNet call is thousands of small
operations, so on the README's 2-core machine a lone default ``animate`` took 16.6 s spinning
briefly (``GOMP_SPINCOUNT=10000``) and 27.2 s sleeping at once (``OMP_WAIT_POLICY=PASSIVE``);
two runs started together took 107 s spinning and 39.6 s sleeping, because a spinning thread
holds a core the other process's threads are waiting for.

So the command looks before torch loads: if the machine has cores for its threads besides the
work runnable now, its threads spin briefly; otherwise, or where it cannot tell (no
``/proc/loadavg``), they sleep. Two commands started together see each other (both are busy
importing), so both sleep. A policy the user set (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``)
wins, and child processes inherit the choice. ``GOMP_SPINCOUNT`` is GNU OpenMP's, the one
PyPI's torch for Linux ships; an Intel OpenMP build ignores it and spins as it always did.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path

LOADAVG = Path("/proc/loadavg")
# The variables that say how OpenMP threads wait; one set by the user is left alone.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# Spins before a waiting thread sleeps: long enough to bridge the gap between two operations
# of a UNet call (tens of microseconds), short enough that a process starting later is not
# starved for long (GNU OpenMP's own default is 300,000).
SPIN_COUNT = "10000"


def runnable_now(loadavg: Path = LOADAVG) -> int | None:
    """Scheduling entities runnable on the machine at this instant, this process included (the
    fourth field of ``/proc/loadavg``, "runnable/total"); None where there is no such file."""
    try:
        return int(loadavg.read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def others_runnable(samples: int = 3, interval_s: float = 0.01,
                    read: Callable[[], int | None] = runnable_now) -> int | None:
    """How many entities besides this process are runnable, the median of ``samples``
    readings: a blip (a shell, a daemon waking) is not counted, a busy process is."""
    readings = []
    for index in range(samples):
        if index:
            time.sleep(interval_s)
        value = read()
        if value is None:
            return None
        readings.append(value - 1)  # this process, running while it reads
    return max(0, int(statistics.median(readings)))


def threads_torch_will_use(environ: MutableMapping[str, str]) -> int:
    """``OMP_NUM_THREADS`` if set, else the cores this process may run on (torch's default)."""
    try:
        return max(1, int(environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1


def choose_wait_policy(environ: MutableMapping[str, str] = os.environ,
                       others: Callable[[], int | None] = others_runnable) -> str:
    """Set how OpenMP threads wait in ``environ`` unless the user did; returns "user",
    "spin" or "sleep". Must run before torch loads: OpenMP reads it once, at start."""
    if any(name in environ for name in WAIT_VARIABLES):
        return "user"
    busy = others()
    cores = os.cpu_count() or 1
    if busy is not None and busy + threads_torch_will_use(environ) <= cores:
        environ["GOMP_SPINCOUNT"] = SPIN_COUNT
        return "spin"
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "sleep"
