"""The ASGI app: the page, and the JSON API behind it (documented in the plugin's README).

- ``GET /`` the page; ``/static/...`` its script and style;
- ``GET /api/info`` the model, the defaults, the download kinds, the queue;
- ``POST /api/jobs`` (multipart: ``sketch`` file, optional; ``prompt``; any sampler option by
  its command-line name) -> 202 and the job's record, or 4xx with the command line's message;
- ``GET /api/jobs/{id}`` the record (state, queue position, progress, result URLs);
- ``GET /api/jobs/{id}/events`` the record's changes as server-sent events;
- ``POST /api/jobs/{id}/cancel`` (or ``DELETE /api/jobs/{id}``) cancel;
- ``GET /api/jobs/{id}/files/sample-N/NAME`` a result file.

The model is loaded once (when the app starts, unless the caller passes a loaded one) and used
by one worker thread; results live in a temporary folder that is removed when the app stops,
and the last ``jobs.KEEP_FINISHED`` finished jobs keep theirs.

Requests must name this server in their ``Host`` header (the bound address or localhost), so
a page on another site cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flipsketch.api import message
from flipsketch.errors import FlipSketchError, UsageError
from flipsketch.plugins import PluginManager, get_manager
from flipsketch_web import options as job_options
from flipsketch_web.jobs import FINISHED, KEEP_FINISHED, Job, JobQueue, QueueFull
from flipsketch_web.render import formats, run_job

STATIC = Path(__file__).parent / "static"
# An upload larger than this is refused before it is decoded; Pillow's decompression-bomb
# guard (in decode_sketch, as for the command line) covers small files that decode huge.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Seconds a client told "the queue is full" (503) waits before trying again (Retry-After):
# about one tiny-to-small job, so a polite client neither hammers the server nor waits for
# long after a place has opened.
RETRY_AFTER_S = 5
# The names this server answers to, besides the address it is bound to; a wildcard address
# (0.0.0.0, ::) answers to any, as the user chose to serve the network.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
ANY_ADDRESS = ("0.0.0.0", "::", "[::]", "")


class _TooLarge(UsageError):
    """An upload over ``MAX_UPLOAD_BYTES``: HTTP 413 rather than 400."""


@dataclass
class Service:
    """What the routes share while the app runs."""

    model: str
    queue: JobQueue
    folder: Path  # results, removed when the app stops
    manager: PluginManager
    stopping: bool = False
    device: str | None = None
    dtype: str | None = None


def error(status: int, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status, headers=headers)


def plain_number(text: str) -> bool:
    """Whether a header's value is a plain decimal number. ``str.isdigit`` alone is not
    enough: it accepts '²' and other scripts' digits, which ``int()`` then refuses (a
    ValueError, so a 500), found by the API's fuzz tests."""
    return text.isascii() and text.isdigit()


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host`` names the app bound to ``host`` answers to (``["*"]``: any)."""
    if host in ANY_ADDRESS:
        return ["*"]
    names = [host, f"[{host}]" if ":" in host and not host.startswith("[") else host]
    return list(dict.fromkeys([*names, *LOCAL_NAMES, *extra]))


def create_app(model: str | None = None, *, pipe: Any = None, device: str | None = None,
               dtype: str | None = None, max_waiting: int = 8,
               manager: PluginManager | None = None, host: str = "127.0.0.1",
               extra_hosts: Sequence[str] = (),
               keep_finished: int = KEEP_FINISHED) -> Starlette:
    """The app for ``model`` (None: the default model), or for the already loaded ``pipe``.

    ``flipsketch serve`` loads the model before it binds the port and passes ``pipe``, so a
    model that fails to load is a one-line error and no server; without ``pipe`` the model is
    loaded when the app starts (the tests, or another ASGI server).

    ``host`` is the address the server is bound to: requests naming another host are refused
    (400), besides localhost and ``extra_hosts`` (a test client's ``testserver``).
    ``keep_finished`` finished jobs keep their records and files; older ones are removed.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from flipsketch.api import default_model

        name = model or default_model()
        plugins = manager or get_manager()
        loaded = pipe
        if loaded is None:
            from flipsketch.api import load_pipeline

            loaded = await run_in_threadpool(load_pipeline, name, device=device, dtype=dtype,
                                             manager=plugins)
        with tempfile.TemporaryDirectory(prefix="flipsketch-web-",
                                         ignore_cleanup_errors=True) as folder:
            results = Path(folder) / "results"

            def runner(job: Job, progress) -> dict[str, Any]:
                return run_job(loaded, job, progress, results / job.id, plugins)

            def drop(job: Job) -> None:
                shutil.rmtree(results / job.id, ignore_errors=True)

            queue = JobQueue(runner, max_waiting=max_waiting, keep_finished=keep_finished,
                             on_drop=drop)
            service = Service(name, queue, Path(folder), plugins, device=device, dtype=dtype)
            app.state.service = service
            queue.start()
            try:
                yield
            finally:
                service.stopping = True
                await run_in_threadpool(queue.stop)

    return Starlette(routes=[
        Route("/", page),
        Route("/api/info", info),
        Route("/api/jobs", list_jobs, methods=["GET"]),
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs/{id}", get_job, methods=["GET"]),
        Route("/api/jobs/{id}", cancel_job, methods=["DELETE"]),
        Route("/api/jobs/{id}/cancel", cancel_job, methods=["POST"]),
        Route("/api/jobs/{id}/events", job_events),
        Route("/api/jobs/{id}/files/{sample}/{name}", job_file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], lifespan=lifespan, middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host, extra_hosts),
                   www_redirect=False)])


def service_of(request: Request) -> Service:
    return request.app.state.service


def with_urls(record: dict[str, Any]) -> dict[str, Any]:
    """A job's record with each result file as a URL (the worker records file names)."""
    if record["result"] is None:
        return record
    result = dict(record["result"])
    result["samples"] = [
        {**sample, "files": {kind: f"/api/jobs/{record['id']}/files/{name}"
                             for kind, name in sample["files"].items()}}
        for sample in result["samples"]]
    return {**record, "result": result}


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def info(request: Request) -> Response:
    service = service_of(request)
    return JSONResponse({
        "model": service.model,
        # Every valued field's default, from the option table (as --help shows them).
        "defaults": {key: o.default for key, o in job_options.OPTIONS.items()
                     if not o.flags and o.default is not None},
        "options": list(job_options.FIELDS),
        "formats": formats(service.manager),
        "queue": service.queue.counts(),
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "max_samples": job_options.MAX_SAMPLES,
    })


async def list_jobs(request: Request) -> Response:
    queue = service_of(request).queue
    return JSONResponse([with_urls(queue.record(job)) for job in list(queue.jobs.values())])


def _cross_site(request: Request) -> bool:
    """A browser's post from another site's page (a form aimed at localhost): refused, so a
    web page cannot spend this machine's model. curl sends no Origin and is let through."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return re.sub(r"^[a-z]+://", "", origin) != request.headers.get("host", "")


async def create_job(request: Request) -> Response:
    service = service_of(request)
    if _cross_site(request):
        return error(403, "jobs are accepted from this server's own page only")
    # The size limit needs the size first: a body without Content-Length (chunked) is
    # refused, and one with it cannot run longer than it says (the HTTP server enforces that).
    length = request.headers.get("content-length")
    if length is None or "transfer-encoding" in request.headers:
        return error(411, "the request has no Content-Length; send the form in one piece "
                          "(curl -F does)")
    if not plain_number(length):
        # !r: the value as sent, escaped, so a control character cannot break the one line
        return error(400, f"the Content-Length {length!r} is not a number of bytes")
    if int(length) > MAX_UPLOAD_BYTES + 2 ** 20:
        return error(413, f"the upload is larger than {MAX_UPLOAD_BYTES // 2 ** 20} MB; "
                          f"scale the drawing down")
    try:
        form = await request.form(max_files=1, max_fields=64)
    except Exception as exc:  # malformed multipart, too many parts: the parser's words
        return error(400, f"the form cannot be read ({exc}); post multipart/form-data "
                          f"or application/x-www-form-urlencoded")
    try:
        job = await _submit(service, form)
    except QueueFull as exc:  # a full queue or a server shutting down: come back later
        return error(503, str(exc), {"Retry-After": str(RETRY_AFTER_S)})
    except _TooLarge as exc:
        return error(413, str(exc))
    except FlipSketchError as exc:
        return error(400, message(exc))
    finally:
        await form.close()
    return JSONResponse(with_urls(service.queue.record(job)), status_code=202,
                        headers={"Location": f"/api/jobs/{job.id}"})


async def _submit(service: Service, form: FormData) -> Job:
    """The form's job, checked whole as ``flipsketch animate`` checks it (options, prompt,
    drawing, a blank drawing, the model's frames and the device's memory) and queued."""
    fields: dict[str, str] = {}
    upload: UploadFile | None = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != job_options.SKETCH:
                raise UsageError(f"the file field '{key}' is not known; send the drawing as "
                                 f"'sketch'")
            upload = value
        elif key == job_options.SKETCH:
            if value:
                raise UsageError("'sketch' must be a file upload (curl: -F "
                                 "sketch=@drawing.png)")
        elif key in fields:
            raise UsageError(f"--{job_options.option_name(key)} is given twice; pass it once")
        else:
            fields[key] = value
    request = job_options.parse(fields, service.manager)
    job = Job(request)
    if upload is not None and (upload.filename or upload.size):
        job.sketch_name = Path(upload.filename or "sketch.png").name
        job.sketch = await _load_upload(upload, job.sketch_name)
    await run_in_threadpool(_check_job, service, job)
    return service.queue.submit(job)


def _check_job(service: Service, job: Job) -> None:
    """The command line's checks after the options (``flipsketch.cli.animate._run``): a
    drawing with nothing to animate, then what the model and the device can take."""
    from flipsketch.api import check_drawing, check_resources

    if job.sketch is not None:
        check_drawing(job.sketch, f"sketch '{job.sketch_name}'")
    check_resources(service.model, job.request.settings, job.request.size,
                    device=service.device, dtype=service.dtype)


async def _load_upload(upload: UploadFile, name: str):
    """The upload, checked and decoded by the command line's own decoder (``decode_sketch``,
    behind ``load_sketch``), so a broken, empty or huge file gets the message ``flipsketch
    animate`` gives for it."""
    from flipsketch.api import decode_sketch

    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise _TooLarge(f"sketch '{name}' is larger than {MAX_UPLOAD_BYTES // 2 ** 20} MB; "
                        f"scale it down")
    return await run_in_threadpool(decode_sketch, data, name)


def _job(request: Request) -> Job | None:
    return service_of(request).queue.get(request.path_params["id"])


def _no_job(request: Request) -> Response:
    return error(404, f"no job '{request.path_params['id']}' on this server; jobs last until "
                      f"it stops, the last {service_of(request).queue.keep_finished} finished "
                      f"ones (GET /api/jobs lists them)")


async def get_job(request: Request) -> Response:
    job = _job(request)
    if job is None:
        return _no_job(request)
    return JSONResponse(with_urls(service_of(request).queue.record(job)))


async def cancel_job(request: Request) -> Response:
    job = _job(request)
    if job is None:
        return _no_job(request)
    if _cross_site(request):
        return error(403, "jobs are cancelled from this server's own page only")
    if job.state in FINISHED:
        return error(409, f"job '{job.id}' has already finished ({job.state})")
    service_of(request).queue.cancel(job)
    return JSONResponse(with_urls(service_of(request).queue.record(job)), status_code=202)


async def job_events(request: Request) -> Response:
    """The job's events as server-sent events, from the first (or after ``Last-Event-ID``);
    the stream ends after the job's last state change."""
    job = _job(request)
    if job is None:
        return _no_job(request)
    service = service_of(request)
    last = request.headers.get("last-event-id", "")
    start = int(last) + 1 if plain_number(last) else 0

    async def stream() -> AsyncIterator[str]:
        # Woken by the worker thread (through the loop) at each new event of the job.
        changed = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(changed.set)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                pass

        unlisten = service.queue.listen(job, wake)
        index = start
        try:
            yield "retry: 1000\n\n"
            while True:
                changed.clear()  # before reading: an event after the read sets it again
                events, finished = service.queue.events_since(job, index)
                for event in events:
                    data = with_urls(event.data) if event.kind == "state" else event.data
                    yield f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(data)}\n\n"
                index += len(events)
                if finished and not events:
                    return
                if not events:
                    if service.stopping:
                        return
                    await changed.wait()
        finally:
            unlisten()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def job_file(request: Request) -> Response:
    job = _job(request)
    if job is None:
        return _no_job(request)
    wanted = f"{request.path_params['sample']}/{request.path_params['name']}"
    files = [name for sample in (job.result or {}).get("samples", [])
             for name in sample["files"].values()]
    if wanted not in files:  # only the job's own outputs: no other path is ever served
        return error(404, f"job '{job.id}' has no file '{wanted}'")
    path = service_of(request).folder / "results" / job.id / wanted
    return FileResponse(path, filename=f"flipsketch-{job.id}-{wanted.replace('/', '-')}")

