"""Two things at once on one machine (issue 24, item 2): ``animate`` runs sharing the inversion
cache, and the settings file written while it is read. (Two batches into one OUTDIR are refused:
tests/test_batch.py.)"""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from flipsketch.models.presets import saved_default_model, set_default_model

from testing import environment, flipsketch_command, shared_sketch

QUICK = ["--steps", "3", "--frames", "3", "--size", "32", "--raw", "--json"]


@pytest.mark.slow  # two real animate processes
def test_two_animate_runs_at_once_share_the_inversion_cache_safely(tiny_model_dir, tmp_path):
    """Both miss, both invert, both write the same entry, each renaming its own temporary
    into place (started together on a busy machine, one may find the other's instead): both
    succeed with the same frames, one whole entry is left and no temporary, and the next run
    is a hit with the same frames again."""
    cache = tmp_path / "cache"
    env = environment(FLIPSKETCH_CACHE=str(cache))

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen(
            flipsketch_command("animate", shared_sketch("fish.png"), "a fish swimming", "-o",
                       tmp_path / name, "--model", tiny_model_dir, "--seed", "3", *QUICK),
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

    runs = {name: start(name) for name in ("a.gif", "b.gif")}
    reports = {}
    for name, run in runs.items():
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        reports[name] = json.loads(out)
    entries = sorted(p.name for p in (cache / "inversions").iterdir())
    assert len(entries) == 1 and entries[0].endswith(".safetensors"), entries
    third = start("c.gif")
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, err
    assert json.loads(out)["inversion_cached"] is True
    # One of the two inverted (both, when they overlap; under load one may start late).
    assert False in {report["inversion_cached"] for report in reports.values()}
    frames = {name: (tmp_path / name).read_bytes() for name in ("a.gif", "b.gif", "c.gif")}
    assert frames["a.gif"] == frames["b.gif"] == frames["c.gif"]
    assert sorted(p.name for p in (cache / "inversions").iterdir()) == entries


def test_the_settings_file_written_while_read_is_always_whole(tmp_path, monkeypatch):
    """``models default`` from one thread while others read the default: every read sees a
    whole file (one of the two values), never a torn one or an error."""
    monkeypatch.setenv("FLIPSKETCH_CONFIG_DIR", str(tmp_path))
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for k in range(150):
                set_default_model("tiny" if k % 2 else None)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            stop.set()

    seen = set()
    writer = threading.Thread(target=write)
    writer.start()
    while not stop.is_set():
        seen.add(saved_default_model())
    writer.join()
    assert errors == []
    assert seen <= {None, "tiny"} and len(seen) == 2, seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no temporaries
