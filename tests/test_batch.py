"""``flipsketch batch``: manifests checked whole, resumable runs, per-job failures, processes.

Runs use the tiny random model folder with 2 steps, 3 frames and 32-px outputs, so a job
takes well under a second once the model is loaded.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from flipsketch import hookimpl
from flipsketch.batch import REPORT, ManifestError, Reporter, read_manifest, run_batch
from flipsketch.batch.manifest import ModelChoice
from flipsketch.plugins import Writer, get_manager

from testing import environment, flipsketch_command, shared_sketch

QUICK = ["--steps", "2", "--frames", "3", "--size", "32"]
MISSING = "missing.png"  # a sketch no folder holds


def write_csv(folder: Path, rows: list[dict], name: str = "jobs.csv") -> Path:
    """A CSV manifest of ``rows`` beside copies of the sketches they name."""
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        if row.get("sketch") not in ("", None, MISSING) and not (folder / row["sketch"]).exists():
            shutil.copy(shared_sketch(row["sketch"]), folder / row["sketch"])
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


JOBS = [
    {"sketch": "fish.png", "prompt": "a fish swimming", "output": "fish.gif", "seed": 1},
    {"sketch": "", "prompt": "a cat walking", "output": "cat.gif", "seed": 2},
    {"sketch": "horse.png", "prompt": "a horse galloping", "output": "", "lambda": 0.7},
]


def report(outdir: Path) -> dict[str, dict]:
    """report.jsonl by output name."""
    lines = (outdir / REPORT).read_text().splitlines()
    return {r["output"]: r for r in map(json.loads, lines)}


def statuses(outdir: Path) -> dict[str, str]:
    return {name: r["status"] for name, r in report(outdir).items()}


@pytest.fixture
def batch(cli, tiny_model_dir):
    """``batch(manifest, outdir, *more)``: the command with the tiny model and QUICK settings."""
    def run(manifest: Path, outdir: Path, *more: str):
        return cli("batch", manifest, "-o", outdir, "--model", tiny_model_dir, *QUICK, *more)
    return run


# -- the manifest ------------------------------------------------------------------------------
def test_csv_and_jsonl_give_the_same_jobs(tmp_path):
    csv_path = write_csv(tmp_path, JOBS)
    jsonl = tmp_path / "jobs.jsonl"
    typed = [{k: v if v != "" else None for k, v in row.items()} for row in JOBS]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in typed))
    defaults = {"num_frames": 3}
    from_csv = read_manifest(csv_path, defaults).jobs
    from_jsonl = read_manifest(jsonl, defaults).jobs
    assert [j.fingerprint for j in from_csv] == [j.fingerprint for j in from_jsonl]
    assert [j.output for j in from_csv] == ["fish.gif", "cat.gif", "3-horse.gif"]
    assert from_csv[1].sketch is None  # empty cell: text only
    assert from_csv[2].settings.lambda_ == 0.7 and from_csv[0].settings.seed == 1
    assert {j.settings.num_frames for j in from_csv} == {3}  # the default, from the caller


def test_command_line_names_are_aliases_of_the_recipe_keys(tmp_path):
    manifest = write_csv(tmp_path, [{"prompt": "a", "frames": 4, "steps": 3, "guidance": 2,
                                     "postprocessor": "raw", "transparent": "yes"}])
    [job] = read_manifest(manifest).jobs
    assert (job.settings.num_frames, job.settings.num_inference_steps,
            job.settings.guidance_scale) == (4, 3, 2.0)
    assert job.write["postprocess"] == "raw" and job.write["transparent"] is True


def test_a_changed_setting_or_model_changes_the_fingerprint(tmp_path):
    manifest = write_csv(tmp_path, JOBS)
    base = [j.fingerprint for j in read_manifest(manifest).jobs]
    assert len(set(base)) == 3
    other_seed = [j.fingerprint for j in read_manifest(manifest, {"seed": 9}).jobs]
    assert other_seed[:2] == base[:2] and other_seed[2] != base[2]  # rows 1-2 set their seed
    other_model = read_manifest(manifest, model=ModelChoice(model="modelscope")).jobs
    assert all(j.fingerprint not in base for j in other_model)


def test_a_changed_model_or_lora_file_in_the_same_place_changes_the_fingerprint(
        tmp_path, tiny_model_dir):
    """Resume must not trust a path: a re-exported model or retrained LoRA in the same folder
    redoes the jobs."""
    manifest = write_csv(tmp_path / "in", JOBS[:1])
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_model.safetensors").write_bytes(b"weights one")

    def prints() -> list[str]:
        choice = ModelChoice(model=str(model), loras=(f"{lora}:0.5",))
        return [j.fingerprint for j in read_manifest(manifest, model=choice).jobs]

    base = prints()
    assert prints() == base
    (lora / "adapter_model.safetensors").write_bytes(b"weights two")  # same size, new bytes
    retrained = prints()
    assert retrained != base
    config = next(p for p in sorted(model.rglob("*.json")))
    config.write_text(config.read_text() + "\n")  # the same folder, re-exported
    assert prints() != retrained


def test_a_sketch_is_hashed_once_by_its_content(tmp_path):
    manifest = write_csv(tmp_path, JOBS)
    before = read_manifest(manifest).jobs[0].fingerprint
    sketch = tmp_path / "fish.png"
    sketch.write_bytes(sketch.read_bytes() + b"\0")  # still a PNG, other bytes
    assert read_manifest(manifest).jobs[0].fingerprint != before


def test_a_nan_fps_is_refused(tmp_path):
    manifest = write_csv(tmp_path, [{"prompt": "a", "fps": "nan"}])
    with pytest.raises(ManifestError, match="column 'fps': must be positive"):
        read_manifest(manifest)


@pytest.mark.parametrize("rows, where, words", [
    ([{"prompt": "a", "colour": "red"}], "jobs.csv:1: column 'colour'", "valid columns"),
    ([{"prompt": "a", "lamda": 0.5}], "jobs.csv:1: column 'lamda'", "did you mean 'lambda'"),
    ([{"prompt": "a", "model": "tiny"}], "jobs.csv:1: column 'model'", "--model"),
    ([{"prompt": "a"}, {"prompt": "b", "seed": "ten"}], "jobs.csv:3: column 'seed'",
     "expected a whole number, got 'ten'"),
    ([{"prompt": "a", "frames": 1}], "jobs.csv:2: column 'frames'", "at least 2"),
    ([{"prompt": "a", "size": 4}], "jobs.csv:2: column 'size'", "at least 8"),
    ([{"prompt": "a", "postprocess": "sparkle"}], "jobs.csv:2: column 'postprocess'",
     "sparkle"),
    ([{"prompt": "a", "sketch": MISSING}], "jobs.csv:2: column 'sketch'",
     "does not exist"),
    ([{"prompt": "a", "output": "x.gif"}, {"prompt": "b", "output": "x.gif"}],
     "jobs.csv:3: column 'output'", "line 2"),
    ([{"prompt": "a", "output": "../x.gif"}], "jobs.csv:2: column 'output'", "leaves OUTDIR"),
    ([{"prompt": "a", "output": "/tmp/x.gif"}], "jobs.csv:2: column 'output'", "absolute"),
    ([{"prompt": "a", "output": "x.doc"}], "jobs.csv:2: column 'output'", "no writer"),
    ([{"prompt": " ", "seed": 1}], "jobs.csv:2: column 'prompt'", "empty"),
])
def test_a_bad_row_is_one_line_naming_row_and_column_and_nothing_runs(tmp_path, batch, rows,
                                                                      where, words):
    manifest = write_csv(tmp_path / "in", rows)
    outdir = tmp_path / "out"
    done = batch(manifest, outdir)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert where in done.stderr and words in done.stderr, done.stderr
    assert not outdir.exists()


def test_a_broken_sketch_and_a_bad_jsonl_line_are_found_before_anything_runs(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text('{"prompt": "a"}\n{"prompt": "b", "sketch": "broken.png"}\n')
    with pytest.raises(ManifestError, match=r"jobs.jsonl:2: column 'sketch': .*not an image"):
        read_manifest(jsonl)
    jsonl.write_text('{"prompt": "a"}\n\n{"prompt": "b",\n')
    with pytest.raises(ManifestError, match=r"jobs.jsonl:3: not JSON"):
        read_manifest(jsonl)


@pytest.mark.slow  # runs a batch of real jobs
def test_a_blank_drawing_and_an_impossible_request_are_refused_before_loading(tmp_path, batch):
    """``animate``'s checks before the model loads, per row: a page with nothing to animate,
    and more memory than the machine has."""
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("L", (64, 64), 255).save(folder / "blank.png")
    blank = folder / "blank.csv"
    blank.write_text("prompt,sketch\na cat,\na dog,blank.png\n")
    done = batch(blank, tmp_path / "out")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "blank.csv:3: column 'sketch'" in done.stderr and "blank" in done.stderr

    huge = folder / "huge.csv"
    huge.write_text("prompt,samples,num_frames\na cat,1,3\na dog,1000000,32\n")
    done = batch(huge, tmp_path / "out")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "huge.csv:3:" in done.stderr and "needs about" in done.stderr
    assert not (tmp_path / "out").exists()


def test_json_summary_and_motion_as_on_animate(tmp_path, batch):
    manifest, outdir = write_csv(tmp_path / "in", JOBS[:2]), tmp_path / "out"
    done = batch(manifest, outdir, "--motion", "0.25", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 0, 0)
    assert [job["output"] for job in summary["jobs"]] == ["fish.gif", "cat.gif"]
    assert summary["report"] == str(outdir / REPORT)
    same = batch(manifest, tmp_path / "lambda", "--lambda", "0.75", "--json")  # = --motion 0.25
    assert [j["fingerprint"] for j in json.loads(same.stdout)["jobs"]] == [
        j["fingerprint"] for j in summary["jobs"]]
    both = batch(manifest, tmp_path / "other", "--motion", "0.2", "--lambda", "0.5")
    assert both.returncode == 2 and "either --lambda or --motion" in both.stderr


def test_a_bad_command_line_default_is_named_by_its_flag(tmp_path, batch):
    done = batch(write_csv(tmp_path, JOBS), tmp_path / "out", "--steps", "0")
    assert done.returncode == 2 and "--steps must be at least 1" in done.stderr


# -- running and resuming ----------------------------------------------------------------------
def test_resume_skips_exactly_the_finished_jobs(tmp_path, batch):
    manifest, outdir = write_csv(tmp_path / "in", JOBS), tmp_path / "out"
    first = batch(manifest, outdir)
    assert first.returncode == 0, first.stderr
    assert statuses(outdir) == dict.fromkeys(["fish.gif", "cat.gif", "3-horse.gif"], "done")
    assert "done" in first.stderr and "report.jsonl" in first.stderr  # the summary table

    (outdir / "cat.gif").unlink()
    assert batch(manifest, outdir).returncode == 0
    assert statuses(outdir) == {"fish.gif": "skipped", "cat.gif": "done",
                                "3-horse.gif": "skipped"}

    changed = [dict(JOBS[0], prompt="a fish diving"), *JOBS[1:]]
    write_csv(tmp_path / "in", changed)
    assert batch(manifest, outdir).returncode == 0
    assert statuses(outdir) == {"fish.gif": "done", "cat.gif": "skipped",
                                "3-horse.gif": "skipped"}

    assert batch(manifest, outdir, "--fresh").returncode == 0
    assert set(statuses(outdir).values()) == {"done"}
    assert sorted(p.name for p in outdir.iterdir()) == ["3-horse.gif", "cat.gif", "fish.gif",
                                                        REPORT]  # no state or temporaries


def test_a_file_no_batch_wrote_needs_force(tmp_path, batch):
    manifest, outdir = write_csv(tmp_path / "in", JOBS[:1]), tmp_path / "out"
    outdir.mkdir()
    (outdir / "fish.gif").write_bytes(b"mine")
    refused = batch(manifest, outdir)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert (outdir / "fish.gif").read_bytes() == b"mine"
    assert batch(manifest, outdir, "--force").returncode == 0
    assert statuses(outdir) == {"fish.gif": "done"}


def broken_writer_plugin() -> types.ModuleType:
    """A real plugin whose writer fails: a runtime failure only the job itself can meet."""
    def write(frames, path, fps):
        raise OSError(errno.ENOSPC, "disk on fire")  # a full disk, as the writers word it

    plugin = types.ModuleType("broken_writer")

    @hookimpl
    def register_writers(register):
        register("broken", Writer("broken", (".broken",), write))

    plugin.register_writers = register_writers
    return plugin


def test_a_failing_job_is_reported_and_the_others_complete(tmp_path, batch, fresh_plugins):
    get_manager().register(broken_writer_plugin(), name="broken-writer")
    rows = [JOBS[0], dict(JOBS[1], output="cat.broken"), JOBS[2]]
    manifest, outdir = write_csv(tmp_path / "in", rows), tmp_path / "out"
    done = batch(manifest, outdir)
    assert done.returncode == 1, done.stderr
    records = report(outdir)
    assert {k: r["status"] for k, r in records.items()} == {
        "fish.gif": "done", "cat.broken": "failed", "3-horse.gif": "done"}
    error = records["cat.broken"]["error"]  # the writer's one line, with the cause
    assert error.startswith("cannot write ") and "(disk on fire)" in error
    assert "\n" not in error
    assert "disk on fire" in done.stderr and "failed" in done.stderr
    assert not [p for p in outdir.iterdir() if p.name.startswith(".")]  # no temporaries
    # The next run retries the failed job only.
    again = batch(manifest, outdir)
    assert again.returncode == 1
    assert statuses(outdir)["fish.gif"] == "skipped"


class Sabotage(Reporter):
    """Does something to the files as a given job starts: what a user (or a full disk) might
    do while a long batch runs."""

    def __init__(self, job: int, action) -> None:
        self.job, self.action = job, action

    def job_started(self, job) -> None:
        if job.index + 1 == self.job:
            self.action()


def test_a_sketch_broken_after_validation_fails_only_its_job(tmp_path, tiny_model_dir):
    manifest, outdir = write_csv(tmp_path / "in", JOBS), tmp_path / "out"
    loaded = read_manifest(manifest, {"num_frames": 3, "num_inference_steps": 2, "size": 32})
    horse = tmp_path / "in" / "horse.png"
    result = run_batch(loaded, outdir, model=ModelChoice(str(tiny_model_dir)),
                       reporter=Sabotage(3, lambda: horse.write_bytes(b"oops")))
    assert [r.status for r in result.reports] == ["done", "done", "failed"]
    assert "not an image" in result.reports[2].error


def test_an_interrupted_batch_keeps_finished_jobs_and_resumes(tmp_path, tiny_model_dir):
    manifest, outdir = write_csv(tmp_path / "in", JOBS), tmp_path / "out"
    loaded = read_manifest(manifest, {"num_frames": 3, "num_inference_steps": 2, "size": 32})
    model = ModelChoice(str(tiny_model_dir))

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(loaded, outdir, model=model, reporter=Sabotage(2, interrupt))
    assert statuses(outdir) == {"fish.gif": "done"}
    assert sorted(p.name for p in outdir.iterdir()) == ["fish.gif", REPORT]
    result = run_batch(loaded, outdir, model=model)
    assert [r.status for r in result.reports] == ["skipped", "done", "done"]


# -- several processes -------------------------------------------------------------------------
@pytest.mark.slow  # the launcher and two workers, each a real process importing torch
def test_two_processes_through_accelerate_split_the_jobs_once_each(tmp_path, batch):
    rows = [{"sketch": "fish.png" if k % 2 else "", "prompt": f"motion {k}", "seed": k}
            for k in range(6)]
    manifest, outdir = write_csv(tmp_path / "in", rows), tmp_path / "out"
    done = batch(manifest, outdir, "--processes", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (outdir / REPORT).read_text().splitlines()]
    assert [r["job"] for r in records] == [1, 2, 3, 4, 5, 6]  # every job, once
    assert {r["status"] for r in records} == {"done"}
    assert [r["process"] for r in records] == [0, 1, 0, 1, 0, 1]  # job i on process i % 2
    assert all((outdir / r["output"]).is_file() for r in records)
    assert "report.jsonl" in done.stderr  # the summary, drawn once by this process
    # Resumed under two processes: nothing to do, nothing done twice.
    again = batch(manifest, outdir, "--processes", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(statuses(outdir).values()) == {"skipped"}


@pytest.mark.slow  # two real batch processes
def test_a_second_batch_into_a_busy_outdir_is_refused_and_the_first_finishes_whole(
        tmp_path, batch, tiny_model_dir):
    """Two batches into one OUTDIR would run the same jobs and append to the same report
    parts: the second is refused in one line while the first (a real process) runs, and the
    folder is free again once it ends, however it ends (the lock is the kernel's)."""

    rows = [{"sketch": "fish.png", "prompt": f"motion {k}", "seed": k} for k in range(8)]
    manifest, outdir = write_csv(tmp_path / "in", rows), tmp_path / "out"
    first = subprocess.Popen(
        flipsketch_command("batch", manifest, "-o", outdir, "--model", tiny_model_dir,
                           "--steps", "6", "--frames", "4", "--size", "64"),
        env=environment(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in first.stderr:  # the first job done: the folder is held
            seen.append(line)
            if line.startswith("done "):
                break
        else:
            pytest.fail("the first batch ended without finishing a job: " + "".join(seen))
        second = batch(manifest, outdir)
        assert first.poll() is None, "the first batch ended before the second tried"
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: another 'flipsketch batch' is writing into '{outdir}'; wait for it to "
            "finish, or pass another -o folder"]
    finally:
        rest = first.communicate(timeout=600)[1]
    assert first.returncode == 0, rest
    assert set(statuses(outdir).values()) == {"done"} and len(statuses(outdir)) == 8
    # Free again: a later batch (other settings, so every job runs again) goes ahead.
    assert batch(manifest, outdir).returncode == 0
    assert set(statuses(outdir).values()) == {"done"}


def test_a_bad_device_or_dtype_is_the_command_lines_problem_not_a_rows(tmp_path, batch):
    manifest = write_csv(tmp_path / "in", JOBS[:1])
    for more, words in ((["--device", "nonsense"], "unknown device"),
                        (["--device", "cpu", "--dtype", "fp16"], "fp16 is not supported")):
        done = batch(manifest, tmp_path / "out", *more)
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and "jobs.csv:" not in done.stderr, done.stderr
