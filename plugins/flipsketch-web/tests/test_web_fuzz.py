"""API fuzzing (issue 24, item 4): seeded Hypothesis requests against the real web app, in
process, on the tiny model: wrong types, huge fields, broken multipart, unknown job ids and
path tricks in the download URL.

The properties, for every request: never a 500, never a traceback (or a Python exception's
repr) in the body, every error one line of JSON, and no file ever served from outside the
job's own folder. A secret file is planted next to the job's folder and in the server's
temporary folder, so a path trick that escaped would serve its bytes.

Download paths go to the ASGI app the way uvicorn hands them over (``path`` percent-decoded,
``raw_path`` as sent), not through an HTTP client, which would normalise ``..`` and encoded
slashes away before the app saw them. ``derandomize=True``: the same examples every run.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

TEST_HOST = ["testserver"]
FAST = {"prompt": "a fish swimming", "steps": "2", "frames": "3", "size": "32"}
SECRET = b"flipsketch-fuzz-secret-0f9e8d"
# 150 examples for each of 6 properties: the module runs in about 10 s on a busy 2-core
# machine.
FUZZ = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
ERRORS_ALLOWED = {400, 403, 404, 405, 409, 411, 413, 503}


class Served(tuple):
    """(app, client, record, own files): with a short repr, as Hypothesis prints it with
    each failing example."""

    def __new__(cls, *parts):
        return super().__new__(cls, parts)

    def __repr__(self) -> str:
        return f"<the app and its job {self[2]['id']}>"


@pytest.fixture(scope="module")
def served(tiny_model_dir):
    """The app (its lifespan running), a test client, and one finished job whose files the
    download fuzzing aims around; the planted secrets lie outside that job's folder."""
    from flipsketch_web.app import create_app
    from starlette.testclient import TestClient

    # Keep every finished job: the fuzzed forms' cancelled jobs must not push the one with
    # files out of the kept ones (its files would go, and the downloads prove nothing).
    app = create_app(str(tiny_model_dir), extra_hosts=TEST_HOST, max_waiting=64,
                     keep_finished=100_000)
    with TestClient(app) as client:
        job = client.post("/api/jobs", data=FAST).json()
        deadline = time.monotonic() + 120
        while (record := client.get(f"/api/jobs/{job['id']}").json())["state"] != "done":
            assert record["state"] in ("queued", "running"), record
            assert time.monotonic() < deadline, record
            time.sleep(0.05)
        folder = app.state.service.folder
        (folder / "secret.txt").write_bytes(SECRET)
        (folder / "results" / "secret.txt").write_bytes(SECRET)
        own = {path.read_bytes() for path in (folder / "results" / job["id"]).rglob("*")
               if path.is_file()}
        yield Served(app, client, record, own)


def check_answer(status: int, body: bytes, content_type: str = "application/json") -> None:
    """What every answer must be: no server error, no traceback, errors as one JSON line."""
    assert status < 500 or status == 503, (status, body[:300])
    text = body.decode("utf-8", "replace")
    for leak in ("Traceback", 'File "', "Error(", "Exception("):
        assert leak not in text, text[:500]
    if status >= 400 and content_type.startswith("application/json"):
        error = json.loads(body)["error"]
        assert error and "\n" not in error, body[:300]


def cancel_if_accepted(client, response) -> None:
    """A fuzzed form that happens to be valid is a real job: cancel it at once (while it
    waits, or at its first step), so the worker stays free for the next example."""
    if response.status_code == 202:
        client.post(f"/api/jobs/{response.json()['id']}/cancel")


# -- the job form ---------------------------------------------------------------------------
def _small_or_junk(low: int, high: int) -> st.SearchStrategy[str]:
    """A field's value: a small number (valid or out of range), a float, text, a huge one."""
    return st.one_of(st.integers(low, high).map(str), st.floats(allow_nan=True).map(str),
                     st.text(max_size=12), st.just("9" * 400), st.just("1e309"),
                     st.just("\x00"), st.just(" 2 "))


def _form() -> st.SearchStrategy[dict[str, str]]:
    from flipsketch_web.options import OPTIONS

    # Fields that cost time when valid stay small (a valid job runs until it is cancelled);
    # every other option gets anything.
    costly = {"steps": _small_or_junk(-2, 3), "frames": _small_or_junk(-2, 4),
              "size": _small_or_junk(-8, 40)}
    others = st.dictionaries(
        st.one_of(st.sampled_from([o for o in OPTIONS if o not in costly]),
                  st.sampled_from(["samples", "model", "lora", "device", "sketch", "prompt_",
                                   "--steps", "lambda_", "STEPS", ""]),
                  st.text(max_size=10)),
        st.one_of(st.text(max_size=20), st.just("x" * 100_000), st.sampled_from(
            ["true", "off", "-1", "nan", "inf", "1e309", "none", "../../etc/passwd"])),
        max_size=4)
    prompt = st.one_of(st.text(max_size=40), st.just("a fish swimming"),
                       st.just("word " * 20_000))
    anything = st.builds(lambda fixed, rest, text: {**rest, **fixed, "prompt": text},
                         st.fixed_dictionaries(costly), others, prompt)
    # A valid tiny job with one or two options set to plausible values: enough of these
    # pass every check that accepted jobs (202) are fuzzed too, not only refusals.
    plausible = st.dictionaries(
        st.sampled_from([o for o in OPTIONS if o not in costly]),
        st.sampled_from(["1", "0", "0.5", "true", "off", "", "-1", "7.5", "default", "none"]),
        max_size=2)
    near_valid = plausible.map(lambda rest: {**rest, **FAST})
    return st.one_of(anything, near_valid)


@FUZZ
@given(form=_form(), sketch=st.one_of(st.none(), st.binary(max_size=64),
                                      st.just(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)),
       name=st.sampled_from(["a.png", "../../x.png", "/etc/passwd", "", "a\x00b.png",
                             "x" * 300]))
def test_any_job_form_is_a_job_or_a_4xx(served, form, sketch, name):
    _, client, _, _ = served
    files = {"sketch": (name, sketch, "image/png")} if sketch is not None else None
    response = client.post("/api/jobs", data=form, files=files)
    event(f"status {response.status_code}")  # --hypothesis-show-statistics: the mix
    check_answer(response.status_code, response.content)
    assert response.status_code in ERRORS_ALLOWED | {202}, response.text
    cancel_if_accepted(client, response)


@FUZZ
@given(body=st.one_of(
           st.binary(max_size=300),
           st.builds(lambda head, tail: b"--B\r\n" + head + b"\r\n\r\n" + tail,
                     st.sampled_from([b'Content-Disposition: form-data; name="prompt"',
                                      b'Content-Disposition: form-data; name="sketch"; '
                                      b'filename="a.png"', b"Content-Disposition: junk",
                                      b"", b"\xff\xfe"]),
                     st.binary(max_size=60))),
       content_type=st.sampled_from([
           "multipart/form-data; boundary=B", "multipart/form-data",
           "multipart/form-data; boundary=", "multipart/form-data; boundary=\"B",
           "application/x-www-form-urlencoded", "application/json", "text/plain", "",
           "multipart/mixed; boundary=B"]))
def test_a_broken_body_is_a_4xx(served, body, content_type):
    _, client, _, _ = served
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/jobs", content=body, headers=headers)
    event(f"status {response.status_code}")
    check_answer(response.status_code, response.content)
    assert response.status_code in ERRORS_ALLOWED | {202}, response.text
    cancel_if_accepted(client, response)


# -- ids and download paths ---------------------------------------------------------------
def _header_bytes(value: str) -> bytes:
    """A header value as a client puts it on the wire: latin-1 where it can be (so '²'
    arrives as '²'), UTF-8 bytes otherwise (which the server reads back as latin-1)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


async def _asgi_get(app, raw_path: bytes, method: str = "GET", headers: dict | None = None,
                    body: bytes = b"") -> tuple[int, bytes, str]:
    """One request straight to the ASGI app, with the path as uvicorn decodes it: (status,
    body, content type). A redirect's ``Location`` must stay on this server (Starlette
    redirects a path with a trailing slash to the route without it)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": unquote(raw_path.decode("latin-1")),
             "raw_path": raw_path, "query_string": b"", "root_path": "",
             "headers": [(key.encode("latin-1"), _header_bytes(value)) for key, value in
                         {"host": "testserver", "content-length": str(len(body)),
                          **(headers or {})}.items()],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80), "state": {}}
    answer: dict = {"body": b""}
    done = False

    async def receive():
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a streaming response waits here for a disconnect

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            headers = dict(message["headers"])
            answer["type"] = headers.get(b"content-type", b"").decode()
            if message["status"] in (301, 302, 303, 307, 308):
                location = headers[b"location"].decode("latin-1")
                assert location.startswith("http://testserver/"), location
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await asyncio.wait_for(app(scope, receive, send), 30)
    return answer["status"], answer["body"], answer["type"]


TRICKS = ["..", "%2e%2e", "%2E%2E", ".%2e", "..%2f..", "..%2F..%2Fsecret.txt", "%2f",
          "%2Fetc%2Fpasswd", "/etc/passwd", "secret.txt", "..%5csecret.txt", "%00", "a%00b",
          "animation.gif%00.txt", "animation.gif", "sample-0", "sample-1", "~", "%252e%252e",
          "%c0%ae%c0%ae", "."]
_segment = st.one_of(st.sampled_from(TRICKS),
                     st.text(max_size=12).map(lambda text: quote(text, safe="")))


@FUZZ
@given(sample=_segment, name=_segment, extra=st.lists(_segment, max_size=2))
@example(sample="sample-1", name="animation.gif", extra=[])  # a real file: 200, its bytes
def test_a_download_never_leaves_the_jobs_folder(served, sample, name, extra):
    app, _, record, own = served
    path = "/".join([f"/api/jobs/{record['id']}/files", sample, name, *extra])
    status, body, content_type = asyncio.run(_asgi_get(app, path.encode("latin-1")))
    event(f"status {status}")
    check_answer(status, body, content_type)
    assert SECRET not in body
    if status == 200:  # only ever one of the job's own result files
        assert body in own, path
    else:
        assert status in (307, 400, 404, 405), (path, status, body[:200])


@FUZZ
@given(job_id=st.one_of(st.text(min_size=1, max_size=40).map(lambda t: quote(t, safe="")),
                        st.sampled_from(TRICKS + ["x" * 5000, "0" * 12])),
       route=st.sampled_from(["", "/events", "/cancel", "/files/sample-0/animation.gif"]),
       method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]))
def test_an_unknown_job_id_is_a_404(served, job_id, route, method):
    app, _, _, _ = served
    path = f"/api/jobs/{job_id}{route}"
    status, body, content_type = asyncio.run(_asgi_get(app, path.encode("latin-1"), method))
    check_answer(status, body, content_type)
    assert status in (307, 404, 405), (path, method, status, body[:200])


# Header values as a client may send them: digits of other scripts ('²' and '١' pass
# str.isdigit), signs, spaces, huge numbers.
_number_header = st.one_of(
    st.text(alphabet=st.characters(codec="latin-1"), max_size=8),
    st.sampled_from(["²", "١٢", "³⁴", "-1", "+5", " 3", "1e3", "0x10", "9" * 50, "", "٣"]))


@FUZZ
@given(length=_number_header)
def test_any_content_length_is_answered_without_a_server_error(served, length):
    """The upload limit reads Content-Length before the body: a value that is not a plain
    number of bytes is a 400, never an exception."""
    app = served[0]
    body = b"prompt=a+fish&steps=x"
    status, answer, content_type = asyncio.run(_asgi_get(
        app, b"/api/jobs", "POST", {"content-length": length,
                                    "content-type": "application/x-www-form-urlencoded"},
        body))
    check_answer(status, answer, content_type)
    assert status in (400, 411, 413), (length, status, answer[:200])


@FUZZ
@given(last=_number_header)
def test_any_last_event_id_resumes_or_replays_the_stream(served, last):
    """``Last-Event-ID`` (sent back by a reconnecting browser, or by anyone): a number
    resumes after it, anything else replays from the start; never a server error."""
    app, _, record, _ = served
    status, answer, content_type = asyncio.run(_asgi_get(
        app, f"/api/jobs/{record['id']}/events".encode(), headers={"last-event-id": last}))
    check_answer(status, answer, content_type)
    assert status == 200 and content_type.startswith("text/event-stream")
    if not last.isascii() or not last.isdigit():
        assert b"id: 0\n" in answer


def test_the_real_files_are_still_served(served):
    """The download route works at all, or the fuzzing above would prove nothing."""
    app, client, record, own = served
    [sample] = record["result"]["samples"]
    for url in sample["files"].values():
        response = client.get(url)
        assert response.status_code == 200 and response.content in own
        status, body, _ = asyncio.run(_asgi_get(app, url.encode()))
        assert status == 200 and body == response.content
