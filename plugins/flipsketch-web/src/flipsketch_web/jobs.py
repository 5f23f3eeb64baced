"""Jobs and the queue in front of the model: one job at a time, the others waiting in order.

One model, one worker thread: sampling already uses every core (or the one GPU), so two jobs
at once would each take twice as long and hold twice the memory. The queue is short and its
positions are visible, so a person at the page knows how long they wait.

A job's history is a list of events (state changes, progress), appended under the queue's
lock and read by the server-sent-events stream from any index, so a client that connects
late, or reconnects with ``Last-Event-ID``, sees every event once and in order.

Finished jobs are kept for their records and downloads, the last ``KEEP_FINISHED`` of them:
when one more finishes, the oldest finished job is forgotten and its results removed
(``on_drop``), so a server that runs for weeks does not fill its disk.

Cancelling a waiting job removes it from the queue; a running job stops at its next progress
report: the worker's progress callback raises ``Cancelled``, which unwinds the sampler (its
``finally`` removes the attention hooks, so the model is clean for the next job).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flipsketch.api import message
from flipsketch.errors import FlipSketchError, UsageError
from flipsketch_web.options import JobRequest

log = logging.getLogger("flipsketch_web")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
# Finished jobs kept (records and result files); the oldest beyond this is forgotten.
KEEP_FINISHED = 50

Progress = Callable[[str, int, int], None]  # (stage, done, total), the library's callback
# Runs one job: (job, progress) -> the result record; raises to fail.
Runner = Callable[["Job", Progress], dict[str, Any]]


class Cancelled(Exception):
    """Raised inside the progress callback to stop a running job; caught by the worker."""


class QueueFull(UsageError):
    """Too many jobs waiting: the client should try again later (HTTP 503)."""


@dataclass
class Event:
    id: int
    kind: str  # "state" (data: the job's record) or "progress" (data: stage, done, total)
    data: dict[str, Any]


@dataclass
class Job:
    request: JobRequest
    sketch: Any = None  # the drawing (a PIL image), None for text only
    sketch_name: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = QUEUED
    position: int | None = None  # jobs ahead of this one, the running one included
    progress: dict[str, Any] | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    events: list[Event] = field(default_factory=list)
    cancel_requested: bool = False
    # Called (under the queue's lock) after each new event: the event streams' wake-ups.
    listeners: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def record(self) -> dict[str, Any]:
        """What the API says about the job (JSON)."""
        base = f"/api/jobs/{self.id}"
        return {
            "id": self.id, "state": self.state, "position": self.position,
            "progress": self.progress, "error": self.error, "result": self.result,
            "prompt": self.request.prompt, "sketch": self.sketch_name,
            "options": self.request.options,
            "created": self.created, "started": self.started, "finished": self.finished,
            "urls": {"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel"},
        }


class JobQueue:
    """Jobs in order, run one at a time by one worker thread through ``runner``.

    The last ``keep_finished`` finished jobs are kept; an older one is forgotten and handed
    to ``on_drop`` (under the lock), which removes its files.
    """

    def __init__(self, runner: Runner, max_waiting: int = 8,
                 keep_finished: int = KEEP_FINISHED,
                 on_drop: Callable[[Job], None] | None = None) -> None:
        self.runner = runner
        self.max_waiting = max_waiting
        self.keep_finished = keep_finished
        self.on_drop = on_drop
        self.jobs: dict[str, Job] = {}
        self.waiting: deque[Job] = deque()
        self.finished: deque[Job] = deque()  # oldest first
        self.running: Job | None = None
        self._lock = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="flipsketch-web-worker",
                                        daemon=True)

    # -- the API's side ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60) -> None:
        """Cancel every job and wait for the worker to leave the model (at its next step)."""
        with self._lock:
            self._stopping = True
            for job in list(self.waiting):
                self._finish(job, CANCELLED)
            self.waiting.clear()
            if self.running is not None:
                self.running.cancel_requested = True
            for job in self.jobs.values():  # wake every event stream: the server is stopping
                self._wake(job)
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, job: Job) -> Job:
        with self._lock:
            if self._stopping:
                raise QueueFull("the server is shutting down; try again when it is back")
            if len(self.waiting) >= self.max_waiting:
                raise QueueFull(f"the queue is full ({len(self.waiting)} jobs waiting); try "
                                f"again when one has finished")
            self.jobs[job.id] = job
            self.waiting.append(job)
            job.position = len(self.waiting) - 1 + (self.running is not None)
            self._emit(job, "state", job.record())
            self._lock.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def cancel(self, job: Job) -> None:
        """A waiting job leaves the queue now; a running one stops at its next progress."""
        with self._lock:
            if job.state == QUEUED:
                self.waiting.remove(job)
                self._finish(job, CANCELLED)
                self._renumber()
            elif job.state == RUNNING:
                job.cancel_requested = True

    def record(self, job: Job) -> dict[str, Any]:
        """The job's record, consistent: not half-way through the worker's update."""
        with self._lock:
            return job.record()

    def events_since(self, job: Job, index: int) -> tuple[list[Event], bool]:
        """Events from ``index`` on, and whether the job has finished (no more will come)."""
        with self._lock:
            return job.events[index:], job.state in FINISHED

    def listen(self, job: Job, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` (from any thread, under the lock) after each new event of ``job``;
        returns the function that stops it."""
        with self._lock:
            job.listeners.append(wake)

        def stop() -> None:
            with self._lock:
                if wake in job.listeners:
                    job.listeners.remove(wake)

        return stop

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"running": int(self.running is not None), "waiting": len(self.waiting)}

    # -- the worker's side ------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self.waiting and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self.running = self.waiting.popleft()
                job.state, job.position, job.started = RUNNING, 0, time.time()
                self._emit(job, "state", job.record())
                self._renumber()
            self._run(job)

    def _run(self, job: Job) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            if job.cancel_requested:
                raise Cancelled
            with self._lock:
                job.progress = {"stage": stage, "done": done, "total": total}
                self._emit(job, "progress", dict(job.progress))

        state, result, error = DONE, None, None
        try:
            result = self.runner(job, progress)
            if job.cancel_requested:  # asked while the last files were written
                state = CANCELLED
        except Cancelled:
            state = CANCELLED
        except FlipSketchError as exc:
            state, error = FAILED, message(exc)
        except Exception as exc:  # a bug or the machine (out of memory): say it, keep serving
            log.exception("job %s failed", job.id)
            state, error = FAILED, f"{type(exc).__name__}: {exc}"
        with self._lock:
            job.result = result if state == DONE else None
            job.error = error
            job.sketch = None  # the drawing's pixels are not needed any more
            self.running = None
            self._finish(job, state)
            self._renumber()

    # -- under the lock ---------------------------------------------------------------------
    def _finish(self, job: Job, state: str) -> None:
        job.state, job.position, job.finished = state, None, time.time()
        self._emit(job, "state", job.record())
        self.finished.append(job)
        while len(self.finished) > self.keep_finished:
            old = self.finished.popleft()
            self.jobs.pop(old.id, None)
            if self.on_drop is not None:
                try:
                    self.on_drop(old)
                except Exception:  # its files stay until the server stops; keep serving
                    log.exception("removing job %s's results failed", old.id)

    def _renumber(self) -> None:
        """Tell each waiting job its new place after the queue moved."""
        ahead = int(self.running is not None)
        for place, job in enumerate(self.waiting):
            if job.position != ahead + place:
                job.position = ahead + place
                self._emit(job, "state", job.record())

    def _emit(self, job: Job, kind: str, data: dict[str, Any]) -> None:
        job.events.append(Event(len(job.events), kind, data))
        self._wake(job)

    @staticmethod
    def _wake(job: Job) -> None:
        for wake in list(job.listeners):
            wake()
