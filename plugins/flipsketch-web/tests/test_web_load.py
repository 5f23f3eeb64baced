"""The web page under load, on a tiny budget (issue 24, item 3): ``benchmarks/web_load.py``
against a real ``flipsketch serve`` process, 6 clients in front of a queue of 2, so the queue
fills; the script's own checks decide its exit code, and the summary is read back here so a
script that checked nothing could not pass.

The full run (50 clients, a 300-job soak) is the script's, by hand: see its docstring.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "web_load.py"


@pytest.mark.slow
def test_the_load_script_holds_its_invariants_on_a_tiny_budget():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--clients", "6", "--queue", "2", "--timeout", "90"],
        capture_output=True, text=True, timeout=150, env={**os.environ, "PYTHONHASHSEED": "0"})
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "result           ok" in out and "problem:" not in out
    accepted = re.search(r"jobs accepted +(\d+): (\d+) done, (\d+) cancelled, (\d+) other, "
                         r"(\d+) unseen", out)
    assert accepted, out
    total, done, cancelled, other, unseen = map(int, accepted.groups())
    # Every client got its job in (retrying after 503s), and every job ended done or
    # cancelled: the cancelling client's at least may end either way.
    assert total == 6 and done + cancelled == 6 and other == unseen == 0
    assert done >= 4  # stream, poll, drop clients' jobs are never cancelled
    # 6 jobs at once against 1 running + 2 waiting: some were told to come back later.
    assert int(re.search(r"503 queue full +(\d+)", out).group(1)) > 0, out
    assert re.search(r"/api/info busy +p50 [\d.]+ ms, p95 [\d.]+ ms", out), out


def test_a_full_queue_is_503_with_retry_after_and_one_message(tiny_model_dir):
    """In process, without the script: a queue of 1 behind a long running job refuses the
    third job with 503, ``Retry-After`` in seconds and one one-line message."""
    from flipsketch_web.app import RETRY_AFTER_S, create_app
    from starlette.testclient import TestClient

    job = {"prompt": "a fish swimming", "steps": "200", "frames": "3", "size": "32"}
    with TestClient(create_app(str(tiny_model_dir), max_waiting=1,
                               extra_hosts=["testserver"])) as client:
        first = client.post("/api/jobs", data=job)
        assert first.status_code == 202
        deadline = time.monotonic() + 60
        while client.get("/api/info").json()["queue"] != {"running": 1, "waiting": 0}:
            assert time.monotonic() < deadline, "the first job never started"
            time.sleep(0.01)
        second = client.post("/api/jobs", data=job)
        assert second.status_code == 202
        refused = client.post("/api/jobs", data=job)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == str(RETRY_AFTER_S) and RETRY_AFTER_S > 0
        body = refused.json()
        assert list(body) == ["error"] and "\n" not in body["error"]
        assert body["error"].startswith("the queue is full (1 jobs waiting)")
        for response in (second, first):  # free the worker at once
            client.post(f"/api/jobs/{response.json()['id']}/cancel")
