"""Running a validated manifest: resumable, one model load per process, shards by process.

Every process of an ``accelerate launch`` runs ``run_batch`` with the same manifest. Job i
belongs to process i % N (a fixed rule, so each job runs exactly once), and every process
loads the model once, onto its own device, and only if one of its jobs needs it.

What is finished lives in ``OUTDIR/report.jsonl``: one line per job with its status and the
fingerprint of its inputs (``manifest.Job.fingerprint``). While a batch runs, each process
appends a line per finished job to its own part, ``OUTDIR/.flipsketch/batch/report.RANK.jsonl``
(flushed and synced: an interruption loses at most the job in progress); at the end the main
process merges the parts into ``report.jsonl``. A part left by an interrupted run is merged
when the next run starts, so the next run resumes where this one stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flipsketch.api import animate, load_pipeline, postprocess, save
from flipsketch.batch.manifest import Job, Manifest, ModelChoice
from flipsketch.errors import FlipSketchError, UsageError
from flipsketch.files import (
    check_writable_folder,
    exclusive_folder,
    remove,
    sweep_killed_writes,
    write_text_atomic,
)
from flipsketch.frames.images import load_sketch
from flipsketch.frames.writers import check_output_path
from flipsketch.plugins import PluginManager, get_manager
from flipsketch.recipes.schema import CACHE_DIR

REPORT = "report.jsonl"
STATE_DIR = f"{CACHE_DIR}/batch"  # inside OUTDIR: the processes' report parts
FINISHED = ("done", "skipped")  # statuses of a job whose outputs are complete
BUSY = ("another 'flipsketch batch' is writing into '{outdir}'; wait for it to finish, or "
        "pass another -o folder")
POLL_S = 0.5  # how often the main process looks at the others' parts


@dataclass
class JobReport:
    """One line of ``report.jsonl``: what happened to one job."""

    job: int  # 1-based position in the manifest
    line: int  # the row's line in the manifest
    output: str
    status: str  # done, skipped (finished earlier, unchanged) or failed
    seconds: float = 0.0
    error: str | None = None  # the failure's one line
    fingerprint: str = ""
    outputs: list[str] = field(default_factory=list)  # relative to OUTDIR
    process: int = 0


class Reporter:
    """What the batch tells its caller while it works; the CLI draws it with rich. Only the
    main process reports; the others' jobs reach it through ``overall``."""

    def batch_started(self, jobs: int, to_run: int, processes: int) -> None:
        pass

    def job_started(self, job: Job) -> None:
        pass

    def job_progress(self, stage: str, done: int, total: int) -> None:
        pass

    def job_finished(self, report: JobReport) -> None:
        pass

    def overall(self, ran: int, to_run: int) -> None:
        """Jobs run so far (done or failed) by every process, of those this run runs."""


@dataclass
class BatchResult:
    reports: list[JobReport]  # every job of the manifest in order (main process); own jobs
    processes: int
    is_main: bool
    seconds: float

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.reports)


def run_batch(manifest: Manifest, outdir: str | Path, *, model: ModelChoice | None = None,
              device: str | None = None, fresh: bool = False, force: bool = False,
              cache: bool = True, reporter: Reporter | None = None,
              manager: PluginManager | None = None) -> BatchResult:
    """Run the jobs of ``manifest`` into ``outdir`` that are not finished yet.

    A job is finished when ``report.jsonl`` says so with the same fingerprint and all its
    outputs exist; ``fresh`` runs every job again. An existing output that no earlier batch
    in ``outdir`` wrote needs ``force``. A job that fails is reported and the others go on;
    only problems found before the first job (exit 2) raise.
    """
    started = time.perf_counter()
    model = model or ModelChoice()
    manager = manager or get_manager()
    outdir = Path(outdir)
    state_dir = outdir / STATE_DIR
    previous = check_outdir(manifest, outdir, force=force, manager=manager)

    proc = _process_state()
    rank, processes = proc.process_index, proc.num_processes
    # One batch at a time per OUTDIR: two would run the same jobs and append to the same
    # report parts. Held by the main process until the report is merged.
    held = ExitStack()
    if proc.is_main_process:
        outdir.mkdir(parents=True, exist_ok=True)
        held.enter_context(exclusive_folder(outdir, BUSY.format(outdir=outdir)))
        sweep_killed_writes(outdir)  # an earlier run killed mid-write: the folder is ours now
    with held:
        # Read again now that the folder is ours: a batch that just ended may have finished
        # jobs since the check above.
        previous = _latest(_records(outdir, state_dir)) if outdir.is_dir() else previous
        reporter = reporter if proc.is_main_process and reporter is not None else Reporter()
        proc.wait_for_everyone()  # every process has read the report and the parts
        if proc.is_main_process:  # start from one report: an interrupted run's parts merged in
            _merge(outdir, state_dir, manifest.jobs, previous, delete_parts=True)
            state_dir.mkdir(parents=True, exist_ok=True)
        proc.wait_for_everyone()

        skip = set() if fresh else {job.index for job in manifest.jobs
                                    if _finished(job, previous.get(job.output), outdir)}
        to_run = len(manifest.jobs) - len(skip)
        reporter.batch_started(len(manifest.jobs), to_run, processes)
        # Only the main process counts every process's jobs (the others report nothing).
        counter = _Overall(state_dir, processes, to_run, reporter if proc.is_main_process else None)
        loaded: dict[str, Any] = {}

        def pipeline():
            """This process's pipeline, loaded on the first job that samples."""
            if "pipe" not in loaded:
                where = process_device(device, proc.device, processes)
                loaded["pipe"] = load_pipeline(
                    model.model, device=where, dtype=model.dtype, allow_pickle=model.allow_pickle,
                    loras=model.loras, unet=model.unet, backbone=model.backbone, manager=manager)
            return loaded["pipe"]

        def progress(stage: str, done: int, total: int) -> None:
            reporter.job_progress(stage, done, total)
            counter.poll()

        own: list[JobReport] = []
        part = state_dir / f"report.{rank}.jsonl"
        try:
            with open(part, "a", encoding="utf-8") as sink:
                mine = manifest.jobs[rank::processes]
                skipped = [_report(job, "skipped", rank) for job in mine if job.index in skip]
                _append(sink, *skipped)  # the finished jobs at once: one write, one sync
                own += skipped
                for report in skipped:
                    reporter.job_finished(report)
                counter.poll(force=True)
                for job in mine:
                    if job.index in skip:
                        continue
                    reporter.job_started(job)
                    if "pipe" not in loaded:  # a model that fails to load stops the batch
                        reporter.job_progress("loading model", 0, 1)
                        pipeline()
                    report = _run(job, outdir, pipeline, progress, cache, manager, rank)
                    _append(sink, report)
                    own.append(report)
                    reporter.job_finished(report)
                    counter.poll(force=True)
                own.sort(key=lambda r: r.job)
            (state_dir / f"end.{rank}").touch()
            if not proc.is_main_process:
                return BatchResult(own, processes, False, time.perf_counter() - started)
            counter.wait_for_all()
            reports = _merge(outdir, state_dir, manifest.jobs, previous, delete_parts=True)
        except KeyboardInterrupt:
            # Keep what finished: in one process nothing else writes parts, so they can go;
            # with several, the next run merges the others' parts when it starts.
            if proc.is_main_process:
                _merge(outdir, state_dir, manifest.jobs, previous, delete_parts=processes == 1)
            raise
        return BatchResult(reports, processes, True, time.perf_counter() - started)


def process_device(requested: str | None, own, processes: int) -> str | None:
    """The device this process loads the model on: ``requested`` (``--device``; None: the
    best available) when it runs alone; one of several processes takes ``own``, its
    accelerator from accelerate (``cuda:RANK``), unless ``requested`` names another kind of
    device or a device with an index. So ``--device cuda`` with two processes uses two GPUs,
    not cuda:0 twice."""
    if processes == 1:
        return requested
    if requested is None or requested == own.type:
        return str(own)
    return requested


def _process_state():
    """This process's place among the processes of an ``accelerate launch`` (alone: 0 of 1)."""
    from flipsketch.devices import process_state

    return process_state(", or flipsketch batch --processes N")


# -- one job -----------------------------------------------------------------------------------
def _run(job: Job, outdir: Path, pipeline, progress, cache: bool, manager,
         rank: int) -> JobReport:
    """Sample, post-process and write one job; a failure becomes the report's error line."""
    started = time.perf_counter()
    try:
        image = load_sketch(job.sketch) if job.sketch is not None else None
        animations = animate(pipeline(), job.prompt, image, job.settings, **job.stages,
                             progress=progress, cache=cache, manager=manager)
        for animation, name in zip(animations, job.outputs, strict=True):
            target = outdir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            images = postprocess(animation.frames, job.write["postprocess"],
                                 size=job.write["size"], transparent=job.write["transparent"],
                                 sketch=image, manager=manager)
            save(images, target, fps=job.write["fps"], force=True, writer=job.write["writer"],
                 manager=manager)
    except Exception as exc:  # noqa: BLE001  one job's failure must not stop the batch
        return _report(job, "failed", rank, time.perf_counter() - started, _one_line(exc))
    return _report(job, "done", rank, time.perf_counter() - started)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if isinstance(exc, FlipSketchError) else f"{type(exc).__name__}: {line}"


def _report(job: Job, status: str, rank: int, seconds: float = 0.0,
            error: str | None = None) -> JobReport:
    return JobReport(job.index + 1, job.line, job.output, status, round(seconds, 3), error,
                     job.fingerprint, list(job.outputs), rank)


def _finished(job: Job, record: JobReport | None, outdir: Path) -> bool:
    return (record is not None and record.status in FINISHED
            and record.fingerprint == job.fingerprint
            and all((outdir / name).exists() for name in job.outputs))


# -- checks before anything runs ---------------------------------------------------------------
def check_outdir(manifest: Manifest, outdir: str | Path, *, force: bool = False,
                 manager: PluginManager | None = None) -> dict[str, JobReport]:
    """Check that the batch may write into ``outdir``, writing nothing; returns what earlier
    runs there finished (the newest record of each output).

    Refuses to replace an output that no earlier batch in ``outdir`` wrote, unless ``force``,
    and anything ``--force`` never replaces (a folder of the user's own files).
    """
    outdir = Path(outdir)
    manager = manager or get_manager()
    check_writable_folder(outdir, force=True, what="-o folder")
    previous = _latest(_records(outdir, outdir / STATE_DIR)) if outdir.is_dir() else {}
    ours = {name for record in previous.values() for name in record.outputs}
    for job in manifest.jobs:
        for name in job.outputs:
            target = outdir / name
            if not (target.exists() or target.is_symlink()):
                continue
            if name not in ours and not force:
                raise UsageError(f"'{target}' exists and no earlier batch in '{outdir}' wrote "
                                 f"it; pass --force to overwrite it, or another output name "
                                 f"(manifest line {job.line})")
            check_output_path(target, force=True, manager=manager, writer=job.write["writer"])
    return previous


def read_report(outdir: str | Path) -> list[JobReport]:
    """The records of ``OUTDIR/report.jsonl``, one per job (empty before the first run)."""
    return _read(Path(outdir) / REPORT)


# -- the report --------------------------------------------------------------------------------
def _append(sink, *reports: JobReport) -> None:
    """Lines, on disk before the next job starts."""
    if not reports:
        return
    sink.write("".join(json.dumps(asdict(report)) + "\n" for report in reports))
    sink.flush()
    os.fsync(sink.fileno())


def _read(path: Path) -> list[JobReport]:
    """The records of a report or part; a line cut short by an interruption is ignored."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            records.append(JobReport(**json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            continue
    return records


def _parts(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("report.*.jsonl")) if state_dir.is_dir() else []


def _records(outdir: Path, state_dir: Path) -> list[JobReport]:
    """The report, then every part (newer than the report), in the order they happened."""
    records = _read(outdir / REPORT)
    for part in _parts(state_dir):
        records += _read(part)
    return records


def _latest(records: Iterable[JobReport]) -> dict[str, JobReport]:
    """The newest record of each output."""
    latest: dict[str, JobReport] = {}
    for record in records:
        latest[record.output] = record
    return latest


def _merge(outdir: Path, state_dir: Path, jobs: list[Job], previous: dict[str, JobReport],
           delete_parts: bool) -> list[JobReport]:
    """Write ``report.jsonl``: for each job of the manifest its newest record (a job never
    run has none); the parts then may go. Returns the records written."""
    latest = {**previous, **_latest(r for part in _parts(state_dir) for r in _read(part))}
    reports = [latest[job.output] for job in jobs if job.output in latest]
    text = "".join(json.dumps(asdict(r)) + "\n" for r in reports)
    if reports or (outdir / REPORT).exists():
        write_text_atomic(outdir / REPORT, text, force=True)
    if delete_parts:
        for path in [*_parts(state_dir), *state_dir.glob("end.*")]:
            remove(path)
        for folder in (state_dir, state_dir.parent):  # gone when nothing else is kept there
            try:
                folder.rmdir()
            except OSError:
                break
    return reports


class _Overall:
    """The main process's count of jobs run by every process, from the parts on disk; each
    poll reads only what the parts gained since the last (a job's line is read once). With
    no reporter (a process other than the main one) it reads nothing."""

    def __init__(self, state_dir: Path, processes: int, to_run: int,
                 reporter: Reporter | None) -> None:
        self.state_dir, self.processes, self.to_run = state_dir, processes, to_run
        self.reporter, self.last = reporter, 0.0
        self.offsets: dict[Path, int] = {}  # part -> bytes read (up to a whole line)
        self.ran = 0

    def poll(self, force: bool = False) -> None:
        if self.reporter is None or (not force and time.monotonic() - self.last < 1.0):
            return
        self.last = time.monotonic()
        for part in _parts(self.state_dir):
            self.ran += sum(r.status != "skipped" for r in self._new(part))
        self.reporter.overall(self.ran, self.to_run)

    def _new(self, part: Path) -> list[JobReport]:
        """The records of ``part`` after its offset; a line still being written waits."""
        start = self.offsets.get(part, 0)
        try:
            with open(part, "rb") as f:
                f.seek(start)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # whole lines only
        self.offsets[part] = start + end
        records = []
        for line in data[:end].decode("utf-8", errors="replace").splitlines():
            try:
                records.append(JobReport(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue
        return records

    def wait_for_all(self) -> None:
        """Until every process has written its end mark (no barrier: a process may finish
        long before another, longer than a collective's timeout)."""
        ends = [self.state_dir / f"end.{rank}" for rank in range(self.processes)]
        while not all(end.exists() for end in ends):
            self.poll()
            time.sleep(POLL_S)
        self.poll(force=True)
