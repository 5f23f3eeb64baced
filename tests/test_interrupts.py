"""Ctrl-C (SIGINT) and ``kill`` (SIGTERM) in the middle of real commands.

Each test starts ``python -m flipsketch`` as a real process, waits for a sign that it reached
the point under test (a progress line on stderr, a checkpoint on disk), not for a fixed time,
so a loaded machine only makes it slower, never flaky. Then it sends the signal and checks
what the user is left with: exit code 130 (SIGINT) or 143 (SIGTERM), one error line and no
traceback, no hidden temporary file, an earlier output byte for byte as it was, and a cache or
checkpoint that the next run resumes from.

"During writing" needs a writer that takes long enough to be caught: ``slowwriter``, a real
third-party plugin (a dist-info with a ``flipsketch`` entry point on ``PYTHONPATH``), opens its
file, says "writing" on stderr and waits ``SLOW_WRITER_SECONDS`` before finishing it.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from flipsketch.training.checkpoints import checkpoint_weights, checkpoints

from testing import SMALL, shared_sketch

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# Generous: a process that never reaches the point under test fails the test, slowly.
REACH_TIMEOUT_S = 240
EXIT_TIMEOUT_S = 60
CODES = {signal.SIGINT: (130, "error: interrupted"), signal.SIGTERM: (143, "error: terminated")}

SLOW_WRITER = '''\
"""A writer that takes its time: it says "writing" once its file is open and half written."""
import os
import sys
import time

from flipsketch.plugins import Writer, hookimpl


def write_slowly(frames, path, fps):
    with open(path, "wb") as file:
        file.write(b"half a file")
        file.flush()
        print(f"writing {path.name}", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("SLOW_WRITER_SECONDS", "120")))
        for frame in frames:
            file.write(frame.tobytes())


@hookimpl
def register_writers(register):
    register("slow", Writer("slow", (".slow",), write_slowly))
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """A folder holding the installed ``slowwriter`` distribution, for ``PYTHONPATH``."""
    site = tmp_path_factory.mktemp("site")
    dist = site / "slowwriter-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slowwriter\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[flipsketch]\nslowwriter = slowwriter_plugin\n")
    (site / "slowwriter_plugin.py").write_text(SLOW_WRITER)
    return site


@dataclass
class Running:
    """A ``flipsketch`` process whose stderr is read line by line as it comes."""

    process: subprocess.Popen
    lines: queue.Queue = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A thread drains stderr, so the process never blocks on a full pipe and the test
        # can wait for a line and for other signs (files) at once, with a timeout.
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_until(self, reached: Callable[[], bool], what: str) -> None:
        """Read stderr until ``reached()``; fail if the process ends or time runs out first."""
        deadline = time.monotonic() + REACH_TIMEOUT_S
        while not reached():
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"never reached {what}; stderr so far:\n{''.join(self.seen)}")
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                self.process.wait()
                pytest.fail(f"ended (exit {self.process.returncode}) before {what}:\n"
                            f"{''.join(self.seen)}")
            self.seen.append(line)

    def wait_for_line(self, prefix: str) -> None:
        self.wait_until(lambda: any(line.startswith(prefix) for line in self.seen),
                        f"a line starting {prefix!r}")

    def finish(self) -> tuple[int, str]:
        """Wait for the exit; (exit code, all of stderr)."""
        code = self.process.wait(timeout=EXIT_TIMEOUT_S)
        self.reader.join(timeout=EXIT_TIMEOUT_S)
        while (line := self.lines.get_nowait()) is not None:
            self.seen.append(line)
        return code, "".join(self.seen)


def environment(site: Path | None = None, **env: str) -> dict[str, str]:
    """The test's private cache and settings folders (conftest's ``private_user_dirs`` set
    them in ``os.environ``), offline, OpenMP not spinning, lines not wrapped at 80 columns
    (Rich's width off a terminal); ``site`` on ``PYTHONPATH``."""
    environ = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
               "PYTHONUNBUFFERED": "1", "COLUMNS": "1000", **env}
    if site is not None:
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(site), environ.get("PYTHONPATH")]))
    return environ


def start(*args: str | os.PathLike, cwd: Path, site: Path | None = None,
          **env: str) -> Running:
    """``python -m flipsketch ARGS`` in ``cwd``, its stderr read as it comes."""
    process = subprocess.Popen([sys.executable, "-m", "flipsketch", *map(os.fspath, args)],
                               cwd=cwd, env=environment(site, **env), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return Running(process)


def run(*args: str | os.PathLike, cwd: Path, site: Path | None = None,
        **env: str) -> subprocess.CompletedProcess:
    """``python -m flipsketch ARGS`` to its end, both streams captured."""
    return subprocess.run([sys.executable, "-m", "flipsketch", *map(os.fspath, args)],
                          cwd=cwd, env=environment(site, **env), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=REACH_TIMEOUT_S)


def assert_stopped(code: int, stderr: str, sig: signal.Signals, *,
                   error: str | None = None) -> None:
    """The exit code of ``sig`` and one error line, the last line, with no traceback."""
    expected_code, expected_line = CODES[sig]
    assert code == expected_code, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert errors[0] == (error or expected_line), stderr


def temporaries(folder: Path) -> list[Path]:
    """Hidden temporary files or folders anywhere under ``folder`` (``atomic_path``'s
    ``.NAME.XXXX.tmp.SUFFIX``, a checkpoint's ``.checkpoint-N.tmp``)."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


ANIMATE = ("--steps", "3", "--frames", "3", "--size", "32", "--raw", "--force")


# -- animate -------------------------------------------------------------------------------
# Each signal is sent at one point (SIGINT while sampling, SIGTERM while writing, SIGTERM in
# a recipe, SIGINT in training): both reach the same cleanup (``Terminated`` is a
# ``KeyboardInterrupt``), and every process costs ~15 s on a busy 2-core machine.
@pytest.mark.slow  # a real process
def test_animate_interrupted_while_sampling(tiny_model_dir, tmp_path):
    """Ctrl-C at the first sampling step: the earlier output stays, nothing else appears."""
    sig = signal.SIGINT
    before = b"GIF89a an earlier animation the user keeps"
    (tmp_path / "out.gif").write_bytes(before)
    running = start("animate", shared_sketch("fish.png"), "a fish swimming", "-o", "out.gif",
                    "--model", tiny_model_dir, *ANIMATE, "--steps", "60", cwd=tmp_path)
    running.wait_for_line("sampling")  # printed as the stage starts, when not on a terminal
    running.process.send_signal(sig)
    code, stderr = running.finish()
    assert_stopped(code, stderr, sig)
    assert (tmp_path / "out.gif").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gif"]


@pytest.mark.slow  # a real process
def test_animate_terminated_while_writing(tiny_model_dir, tmp_path, plugin_site):
    """``kill`` with the output's temporary file half written: it goes (SIGTERM used to end
    the process on the spot and leave it), and the old output stays."""
    sig = signal.SIGTERM
    before = b"an earlier output the user keeps"
    target = tmp_path / "out.slow"
    target.write_bytes(before)
    running = start("animate", shared_sketch("fish.png"), "a fish swimming", "-o", target.name,
                    "--model", tiny_model_dir, *ANIMATE, cwd=tmp_path, site=plugin_site)
    running.wait_for_line("writing")
    assert temporaries(tmp_path), "the writer announced itself before opening its file"
    running.process.send_signal(sig)
    code, stderr = running.finish()
    assert_stopped(code, stderr, sig)
    assert target.read_bytes() == before
    assert temporaries(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.slow"]


# -- recipe run ----------------------------------------------------------------------------
RECIPE = """\
version: 1
model: {model}
defaults: {{num_frames: 3, num_inference_steps: 3}}
steps:
  - name: fish
    type: animate
    sketch: {sketch}
    prompt: a fish swimming
  - name: clip
    type: write
    input: fish
    path: fish.slow
    postprocess: raw
    size: 32
"""


@pytest.mark.slow  # two real processes
def test_recipe_killed_in_its_second_step_resumes_from_the_cache(tiny_model_dir, tmp_path,
                                                                 plugin_site):
    """SIGTERM while step 2 writes: step 1's cache entry is complete, and the re-run takes
    it from there (step 1 ``cached``, step 2 ``ran``)."""
    recipe = tmp_path / "fish.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir, sketch=shared_sketch("fish.png")))
    outdir = tmp_path / "out"
    running = start("recipe", "run", recipe, "-o", outdir, cwd=tmp_path, site=plugin_site)
    running.wait_for_line("writing")
    running.process.send_signal(signal.SIGTERM)
    code, stderr = running.finish()
    assert_stopped(code, stderr, signal.SIGTERM, error=(
        "error: step 'clip' (write) failed: terminated; outputs of earlier steps are kept, "
        "and a re-run resumes from this step"))
    assert temporaries(outdir) == [] and not (outdir / "fish.slow").exists()
    manifest = json.loads((outdir / ".flipsketch" / "manifest.json").read_text())
    assert list(manifest["steps"]) == ["fish"]  # step 1 recorded whole, step 2 not at all

    again = run("recipe", "run", recipe, "-o", outdir, "--json", cwd=tmp_path,
                site=plugin_site, SLOW_WRITER_SECONDS="0")
    assert again.returncode == 0, again.stderr
    steps = json.loads(again.stdout)["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("fish", "cached"), ("clip", "ran")]
    assert (outdir / "fish.slow").read_bytes().startswith(b"half a file")
    assert temporaries(outdir) == []


@pytest.mark.slow  # two real processes
def test_recipe_killed_hard_while_writing_resumes_and_leaves_no_temporary(
        tiny_model_dir, tmp_path, plugin_site):
    """``kill -9`` (no cleanup runs) with step 2's output half written: the re-run takes step
    1 from the cache, writes step 2 whole and clears the killed write's temporary. While the
    first run was alive, a second into the same folder was refused."""
    recipe = tmp_path / "fish.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir, sketch=shared_sketch("fish.png")))
    outdir = tmp_path / "out"
    running = start("recipe", "run", recipe, "-o", outdir, cwd=tmp_path, site=plugin_site)
    running.wait_for_line("writing")
    second = run("recipe", "run", recipe, "-o", outdir, cwd=tmp_path, site=plugin_site)
    assert second.returncode == 2 and second.stderr.strip() == (  # one run per folder
        f"error: another 'flipsketch recipe run' is writing into '{outdir}'; wait for it to "
        "finish, or pass another -o"), second.stderr
    running.process.send_signal(signal.SIGKILL)
    assert running.finish()[0] == -signal.SIGKILL
    assert temporaries(outdir), "a hard kill leaves the half-written temporary"

    again = run("recipe", "run", recipe, "-o", outdir, "--json", cwd=tmp_path,
                site=plugin_site, SLOW_WRITER_SECONDS="0")
    assert again.returncode == 0, again.stderr
    steps = json.loads(again.stdout)["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("fish", "cached"), ("clip", "ran")]
    assert (outdir / "fish.slow").stat().st_size > len(b"half a file")  # whole
    assert temporaries(outdir) == []


@pytest.mark.slow  # two real processes
def test_batch_killed_hard_while_writing_finishes_and_leaves_no_temporary(
        tiny_model_dir, tmp_path, plugin_site):
    """``kill -9`` with a job's output half written: the next batch clears the temporary, runs
    that job again and skips the finished one."""
    shutil.copy(shared_sketch("fish.png"), tmp_path / "fish.png")
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in (
        {"sketch": "fish.png", "prompt": "a fish swimming", "output": "a.gif", "seed": 1},
        {"sketch": "fish.png", "prompt": "a fish diving", "output": "b.slow", "seed": 2})))
    outdir = tmp_path / "out"
    batch = ("batch", manifest, "-o", outdir, "--model", tiny_model_dir, "--steps", "3",
             "--frames", "3", "--size", "32")
    running = start(*batch, cwd=tmp_path, site=plugin_site)
    running.wait_for_line("writing")
    running.process.send_signal(signal.SIGKILL)
    assert running.finish()[0] == -signal.SIGKILL
    assert temporaries(outdir), "a hard kill leaves the half-written temporary"

    again = run(*batch, "--json", cwd=tmp_path, site=plugin_site, SLOW_WRITER_SECONDS="0")
    assert again.returncode == 0, again.stderr
    reports = json.loads(again.stdout)["jobs"]
    assert [(r["output"], r["status"]) for r in reports] == [("a.gif", "skipped"),
                                                             ("b.slow", "done")]
    assert (outdir / "b.slow").stat().st_size > len(b"half a file")
    assert temporaries(outdir) == []


# -- train ---------------------------------------------------------------------------------
@pytest.mark.slow  # two real training processes
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_training_interrupted_after_a_checkpoint_resumes(tmp_path, sig):
    """Ctrl-C, or ``kill -9`` at whatever moment follows (a checkpoint may be half written:
    checkpoints are every 2 steps), once a checkpoint exists: the newest complete checkpoint
    loads, and ``--resume`` continues from it to the end."""
    config = tmp_path / "small.yaml"
    base = {**SMALL["stages"]["base"], "steps": 400, "checkpoint_every": 2,
            "export_every": 1000}
    config.write_text(yaml.safe_dump({**SMALL, "stages": {**SMALL["stages"], "base": base}}))
    run_dir = tmp_path / "run"
    running = start("train", "base", config, "-o", run_dir, cwd=tmp_path)
    running.wait_until(lambda: bool(checkpoints(run_dir)), "the first checkpoint")
    if sig == signal.SIGKILL:
        time.sleep(random.Random(24).uniform(0.5, 3.0))  # seeded: another moment, replayable
    running.process.send_signal(sig)
    code, stderr = running.finish()
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert_stopped(code, stderr, sig)

    last = checkpoints(run_dir)[-1]
    step = json.loads((last / "state.json").read_text())["step"]
    assert step < 400 and checkpoint_weights(last)  # complete, and it loads

    resumed = run("train", "base", config, "-o", run_dir, "--resume",
                  "--steps", str(step + 2), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {last} (step {step})" in resumed.stderr
    assert checkpoints(run_dir)[-1].name == f"checkpoint-{step + 2:07d}"
    assert temporaries(run_dir) == []  # an interrupted save's folder is cleaned up
