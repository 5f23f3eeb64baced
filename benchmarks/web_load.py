"""Load and soak a real ``flipsketch serve`` on loopback (issue 24, item 3).

Starts ``flipsketch serve --host 127.0.0.1 --port 0 --model tiny --queue Q`` as a subprocess
with its own ``TMPDIR`` (so its temporary files can be counted), then:

- **load**: ``--clients`` threads (default 50) start at once; each submits one tiny job
  (steps 2, frames 3, size 32), honouring ``Retry-After`` while the queue is full, and follows
  it in one of four ways: streaming its server-sent events to the end, polling its record,
  cancelling it (while queued or running), or opening the event stream and dropping it after
  the first event (then polling). A probe thread times ``GET /api/info`` while the worker is
  busy: the page must stay responsive while a job samples.
- **soak** (``--soak JOBS``): after a warm-up of ``KEEP_FINISHED`` jobs (the server keeps the
  last 50 finished jobs' files, so the folder grows until then by design), JOBS more jobs run
  back to back through a few clients; the server's RSS (``/proc/PID/status`` VmRSS) and the
  number of files under its ``TMPDIR`` are read before and after and must stay flat.

The invariants are checked, not just printed: every accepted job ends ``done`` or
``cancelled`` (never ``failed``, never lost), every 503 carries ``Retry-After`` and one
one-line ``{"error": ...}`` message, the queue was seen full at least once (when the clients
outnumber it), and the soak stays flat. The exit code is 0 only if all hold; one summary
block gives the figures. Bounded: ``--timeout`` seconds for the whole run, clients capped.

    python benchmarks/web_load.py                      # 50 clients, queue 8
    python benchmarks/web_load.py --soak 300           # and a 300-job soak
    python benchmarks/web_load.py --clients 6 --queue 2   # the test suite's tiny budget
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FINISHED = ("done", "failed", "cancelled")
JOB = {"prompt": "a fish swimming", "steps": "2", "frames": "3", "size": "32"}
KEEP_FINISHED = 50  # flipsketch_web.jobs.KEEP_FINISHED: finished jobs whose files are kept
MAX_CLIENTS = 200  # a bound on what one run may open against the machine
ROLES = ("stream", "poll", "cancel", "drop")
# RSS may wobble by the allocator's caching; growth beyond this over the soak is a leak.
RSS_SLACK_KB = 20 * 1024


@dataclass
class Tally:
    """What the clients saw, shared between their threads (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: dict[str, str] = field(default_factory=dict)  # job id -> role
    final: dict[str, str] = field(default_factory=dict)  # job id -> last state seen
    full: int = 0  # 503 answers
    problems: list[str] = field(default_factory=list)  # broken invariants, in words
    given_up: int = 0  # clients that never got a place before the deadline

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


def start_server(queue: int, model: str, temp: Path) -> tuple[subprocess.Popen, str]:
    """A real ``flipsketch serve`` on 127.0.0.1 and a port the system picks; its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flipsketch", "serve", "--host", "127.0.0.1", "--port", "0",
         "--model", model, "--queue", str(queue)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(temp)})
    line = process.stdout.readline()
    if not line.startswith("flipsketch serving model"):
        process.kill()
        raise SystemExit(f"the server did not start: {line}{process.stderr.read()}")
    return process, line.split(" on ")[1].split()[0].rstrip("/")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def count_files(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file())


def submit(http: httpx.Client, tally: Tally, deadline: float, role: str) -> str | None:
    """One job, retried after ``Retry-After`` while the queue is full; its id (None: the
    deadline came first). Each 503 is checked: the header and one one-line message."""
    while time.monotonic() < deadline:
        response = http.post("/api/jobs", data=JOB)
        if response.status_code == 202:
            job_id = response.json()["id"]
            with tally.lock:
                tally.accepted[job_id] = role
            return job_id
        if response.status_code != 503:
            tally.problem(f"submit answered {response.status_code}: {response.text[:200]}")
            return None
        with tally.lock:
            tally.full += 1
        body = response.json()
        retry = response.headers.get("retry-after", "")
        if not retry.isdigit():
            tally.problem(f"a 503 without a Retry-After in seconds: {dict(response.headers)}")
            retry = "1"
        if list(body) != ["error"] or "\n" in body["error"] or "queue is full" not in \
                body["error"]:
            tally.problem(f"a 503 whose body is not one clear message: {response.text[:200]}")
        # Honour the header, but not to the letter: a jitter of a fraction of it spreads
        # the clients so they do not all come back in the same instant.
        time.sleep(min(int(retry), 2) * random.uniform(0.2, 1.0))
    return None


def follow(http: httpx.Client, job_id: str, role: str, deadline: float) -> str:
    """Follow the job in the client's way to its end; its last state (``lost``: it vanished,
    ``timeout``: the deadline came first)."""
    if role == "stream":
        state = None
        with http.stream("GET", f"/api/jobs/{job_id}/events") as response:
            for line in response.iter_lines():
                if line.startswith("data: "):  # a state event's data is the record
                    state = json.loads(line[6:]).get("state", state)
        if state in FINISHED:
            return state
    elif role == "drop":  # read the first event, then hang up mid-stream
        with http.stream("GET", f"/api/jobs/{job_id}/events") as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    break
    elif role == "cancel":  # some while queued, some while running
        time.sleep(random.uniform(0, 1.5))
        response = http.post(f"/api/jobs/{job_id}/cancel")
        if response.status_code not in (202, 409):  # 409: it had finished already
            return f"cancel answered {response.status_code}"
    while time.monotonic() < deadline:  # poll (and confirm what the stream said)
        response = http.get(f"/api/jobs/{job_id}")
        if response.status_code == 404:
            return "lost"
        state = response.json()["state"]
        if state in FINISHED:
            return state
        time.sleep(0.1)
    return "timeout"


def client(url: str, role: str, tally: Tally, deadline: float, jobs: int = 1) -> None:
    """One client: ``jobs`` jobs, one after the other, each followed in ``role``'s way."""
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(jobs):
            try:
                job_id = submit(http, tally, deadline, role)
                if job_id is None:
                    with tally.lock:
                        tally.given_up += 1
                    return
                state = follow(http, job_id, role, deadline)
            except httpx.HTTPError as exc:
                tally.problem(f"a {role} client's request failed: {exc!r}")
                return
            with tally.lock:
                tally.final[job_id] = state
            if state not in ("done", "cancelled"):
                tally.problem(f"job {job_id} ({role}) ended {state}")


def probe(url: str, stop: threading.Event, latencies: list[float]) -> None:
    """``GET /api/info`` every 50 ms; the times of those answered while a job was running."""
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            start = time.perf_counter()
            response = http.get("/api/info")
            took = time.perf_counter() - start
            if response.status_code == 200 and response.json()["queue"]["running"]:
                latencies.append(took)
            stop.wait(0.05)


def run_clients(url: str, roles: list[str], tally: Tally, deadline: float,
                jobs: int = 1) -> None:
    threads = [threading.Thread(target=client, args=(url, role, tally, deadline, jobs),
                                daemon=True) for role in roles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--queue", type=int, default=8, help="the server's --queue")
    parser.add_argument("--soak", type=int, default=0, metavar="JOBS",
                        help="after the load, this many more jobs, checking RSS and files")
    parser.add_argument("--soak-warmup", type=int, default=KEEP_FINISHED, metavar="JOBS",
                        help="jobs before the soak's first reading, at least 50: the server "
                             "keeps the last 50 finished jobs' files, so fewer would count "
                             "those as growth")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for the whole run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS}")
    if args.soak_warmup < KEEP_FINISHED:
        parser.error(f"--soak-warmup must be at least {KEEP_FINISHED} (the jobs the server "
                     f"keeps with their files)")
    random.seed(args.seed)
    deadline = time.monotonic() + args.timeout

    with tempfile.TemporaryDirectory(prefix="web-load-") as temp:
        process, url = start_server(args.queue, args.model, Path(temp))
        tally, latencies, stop = Tally(), [], threading.Event()
        prober = threading.Thread(target=probe, args=(url, stop, latencies), daemon=True)
        soak: dict[str, int] = {}
        started = time.monotonic()
        try:
            prober.start()
            roles = [ROLES[k % len(ROLES)] for k in range(args.clients)]
            run_clients(url, roles, tally, deadline)
            load_s = time.monotonic() - started
            with tally.lock:
                load_states = [tally.final.get(job_id, "unseen") for job_id in tally.accepted]
            if args.soak:
                # Warm up to the kept-jobs ceiling first, then read: from then on every kept
                # job is a finished one with its files (the load's cancelled ones, which
                # keep fewer, have been forgotten). 4 clients keep the worker busy.
                run_clients(url, ["poll"] * 4, tally, deadline,
                            jobs=-(-args.soak_warmup // 4))
                soak["rss_start"], soak["files_start"] = rss_kb(process.pid), count_files(
                    Path(temp))
                before = len(tally.final)
                run_clients(url, ["poll"] * 4, tally, deadline, jobs=-(-args.soak // 4))
                soak["jobs"] = len(tally.final) - before
                soak["rss_end"], soak["files_end"] = rss_kb(process.pid), count_files(
                    Path(temp))
        finally:
            stop.set()
            prober.join(5)
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
    total_s = time.monotonic() - started

    unfinished = set(tally.accepted) - set(tally.final)
    if unfinished:
        tally.problem(f"{len(unfinished)} accepted jobs never seen to finish")
    if args.clients > args.queue + 1 and not tally.full:
        tally.problem("the queue was never seen full (no 503)")
    if tally.given_up:
        tally.problem(f"{tally.given_up} clients never got a place before --timeout")
    flat = None
    if soak:
        flat = (soak["rss_end"] - soak["rss_start"] <= RSS_SLACK_KB
                and soak["files_end"] <= soak["files_start"])
        if not flat:
            tally.problem(f"the soak did not stay flat: {soak}")

    lines = [
        "web load summary",
        f"  clients          {args.clients} (queue {args.queue}, roles "
        f"{', '.join(ROLES)})",
        f"  jobs accepted    {len(load_states)}: {load_states.count('done')} done, "
        f"{load_states.count('cancelled')} cancelled, "
        f"{sum(state not in ('done', 'cancelled', 'unseen') for state in load_states)} other, "
        f"{load_states.count('unseen')} unseen (the load phase)",
        f"  503 queue full   {tally.full} (each with Retry-After and one message)",
        f"  load phase       {load_s:.1f} s; whole run {total_s:.1f} s",
    ]
    if latencies:
        lines.append(f"  /api/info busy   p50 {statistics.median(latencies) * 1000:.1f} ms, "
                     f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms, "
                     f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} requests")
    else:
        lines.append("  /api/info busy   no request landed while a job ran")
    if soak:
        lines += [
            f"  soak             {soak['jobs']} jobs after a {args.soak_warmup}-job warm-up "
            f"({len(tally.final)} jobs in all, {len(unfinished)} unseen)",
            f"  soak RSS         {soak['rss_start'] / 1024:.1f} MB -> "
            f"{soak['rss_end'] / 1024:.1f} MB",
            f"  soak temp files  {soak['files_start']} -> {soak['files_end']}",
            f"  soak flat        {'yes' if flat else 'NO'}",
        ]
    lines.append(f"  result           {'ok' if not tally.problems else 'FAILED'}")
    lines += [f"  problem: {text}" for text in tally.problems[:20]]
    print("\n".join(lines), flush=True)
    return 0 if not tally.problems else 1


if __name__ == "__main__":
    sys.exit(main())
