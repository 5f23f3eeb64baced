"""The web plugin, installed for real: ``flipsketch serve``'s JSON API through Starlette's test
client on the tiny random model (jobs run to completion, progress arrives in order, bad input
gets the command line's own message, cancel, one job at a time), and the command itself.

The browser's side (drawing on the page, Generate, the animation) is tests/test_web_browser.py.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

DISTRIBUTION = "flipsketch-web"
FAST = {"steps": "2", "frames": "3", "size": "128"}
TEST_HOST = ["testserver"]  # the test client's Host; the server itself answers localhost only


@pytest.fixture(scope="module")
def web():
    try:
        importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{DISTRIBUTION} is not installed; run 'pip install -e plugins/flipsketch-web'")
    import flipsketch_web.app

    return flipsketch_web.app


@pytest.fixture(scope="module")
def client(web, tiny_model_dir):
    """One server for the module, as a user runs one: the model loads once, when it starts."""
    from starlette.testclient import TestClient

    with TestClient(web.create_app(str(tiny_model_dir), extra_hosts=TEST_HOST)) as client:
        yield client


# -- helpers -----------------------------------------------------------------------------------
def drawing_png(blank: bool = False) -> bytes:
    """A doodle: an outlined fish body and tail, dark strokes on white (or the white page
    alone: an untouched canvas)."""
    image = Image.new("L", (256, 256), 255)
    if not blank:
        draw = ImageDraw.Draw(image)
        draw.ellipse((50, 90, 180, 170), outline=0, width=4)
        draw.polygon([(180, 130), (230, 95), (230, 165)], outline=0, width=4)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny file whose header claims ``width`` x ``height`` pixels: a decompression bomb as
    an image decoder first sees one."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def submit(client, prompt: str = "a fish swimming", sketch: bytes | None = None,
           name: str = "fish.png", **options: str):
    files = {"sketch": (name, sketch, "image/png")} if sketch is not None else None
    return client.post("/api/jobs", data={"prompt": prompt, **FAST, **options}, files=files)


def events(client, job_id: str, last: int | None = None) -> list[tuple[int, str, dict]]:
    """(id, kind, data) of each server-sent event; returns when the stream ends (the job's
    last state change)."""
    headers = {"Last-Event-ID": str(last)} if last is not None else {}
    response = client.get(f"/api/jobs/{job_id}/events", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    parsed = []
    for block in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            parsed.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return parsed


def wait_for(client, job_id: str, check, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/api/jobs/{job_id}").json()
        if check(record):
            return record
        time.sleep(0.02)
    pytest.fail(f"job {job_id} never got there: {record}")


def states(stream) -> list[str]:
    return [data["state"] for _, kind, data in stream if kind == "state"]


# -- a job from start to finish ----------------------------------------------------------------
def test_a_job_runs_to_completion_with_its_progress_in_order(client):
    response = submit(client, sketch=drawing_png())
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == job["urls"]["self"] == f"/api/jobs/{job['id']}"
    assert job["sketch"] == "fish.png" and job["options"] == FAST

    stream = events(client, job["id"])
    assert [event_id for event_id, _, _ in stream] == list(range(len(stream)))
    assert states(stream)[0] == "queued" and states(stream)[-2:] == ["running", "done"]
    progress = [(d["stage"], d["done"], d["total"]) for _, kind, d in stream
                if kind == "progress"]
    writes = len(stream[-1][2]["result"]["samples"][0]["files"])
    assert progress == [("inversion", 0, 1), ("inversion", 1, 1), ("sampling", 1, 2),
                        ("sampling", 2, 2),
                        *[("writing", k, writes) for k in range(writes + 1)]]
    # A client that reconnects gets only what it missed.
    assert events(client, job["id"], last=3) == stream[4:]

    record = client.get(job["urls"]["self"]).json()
    assert record == stream[-1][2]
    assert record["state"] == "done" and record["error"] is None
    result = record["result"]
    assert (result["frames"], result["size"]) == (3, 128)
    [sample] = result["samples"]
    kinds = {"gif", "mp4", "zip"} | ({"svg"} if has_svg_plugin() else set())
    assert set(sample["files"]) == kinds

    gif = client.get(sample["files"]["gif"])
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    with Image.open(io.BytesIO(gif.content)) as image:
        assert (image.n_frames, image.size) == (3, (128, 128))
    with zipfile.ZipFile(io.BytesIO(client.get(sample["files"]["zip"]).content)) as archive:
        assert len([n for n in archive.namelist() if n.endswith(".png")]) == 3
    assert client.get(sample["files"]["mp4"]).content[4:8] == b"ftyp"
    if has_svg_plugin():
        assert b"<svg" in client.get(sample["files"]["svg"]).content[:500]


def has_svg_plugin() -> bool:
    from flipsketch.plugins import get_manager

    return "svg" in get_manager().registry("writer").impls


def test_text_only_and_several_samples(client, tmp_path):
    """No sketch is text-only generation; K samples come back, ranked when there is a
    drawing to rank against."""
    text_only = submit(client, prompt="a ball bouncing", samples="2").json()
    ranked = submit(client, sketch=drawing_png(), samples="2", seed="5").json()
    assert text_only["sketch"] is None
    for job in (text_only, ranked):
        assert states(events(client, job["id"]))[-1] == "done"
    text_result = client.get(f"/api/jobs/{text_only['id']}").json()["result"]
    assert not text_result["ranked"]
    assert [s["seed"] for s in text_result["samples"]] == [0, 1]
    result = client.get(f"/api/jobs/{ranked['id']}").json()["result"]
    assert result["ranked"] and [s["rank"] for s in result["samples"]] == [1, 2]
    assert sorted(s["seed"] for s in result["samples"]) == [5, 6]
    scores = [s["score"] for s in result["samples"]]
    assert scores == sorted(scores, reverse=True)


# -- bad input: the command line's own message, before anything runs ---------------------------
BAD_UPLOADS = {
    "not-an-image.png": b"hello, not a picture",
    "empty.png": b"",
    "bomb.png": png_claiming(30000, 30000),
    "truncated.png": drawing_png()[:200],
}


@pytest.mark.parametrize("name", BAD_UPLOADS)
def test_a_bad_upload_gets_the_command_lines_message(client, cli, tmp_path, name):
    data = BAD_UPLOADS[name]
    (tmp_path / name).write_bytes(data)
    said = cli("animate", name, "a fish swimming", cwd=tmp_path)
    assert said.returncode == 2 and said.stderr.startswith("error: sketch")

    response = submit(client, sketch=data, name=name)
    assert response.status_code == 400
    assert response.json() == {"error": said.stderr.removeprefix("error: ").strip()}
    assert client.get("/api/info").json()["queue"] == {"running": 0, "waiting": 0}


@pytest.mark.parametrize("options, cli_args", [
    ({"frames": "1"}, ["--frames", "1"]),
    ({"steps": "two"}, ["--steps", "two"]),
    ({"lambda": "0.3", "motion": "0.5"}, ["--lambda", "0.3", "--motion", "0.5"]),
    ({"aligner": "nope"}, ["--aligner", "nope"]),
    ({"tau1": "9"}, ["--tau1", "9"]),
    ({"motion": "1.5"}, ["--motion", "1.5"]),
])
def test_a_bad_option_gets_the_command_lines_message(client, cli, tmp_path, options,
                                                     cli_args):
    (tmp_path / "fish.png").write_bytes(drawing_png())
    said = cli("animate", "fish.png", "a fish", "--steps", "2", *cli_args, cwd=tmp_path)
    assert said.returncode == 2
    expected = said.stderr.removeprefix("error: ").split(" (see '")[0].strip()

    response = submit(client, sketch=drawing_png(), **options)
    assert (response.status_code, response.json()) == (400, {"error": expected})
    if "motion" in options and "lambda" not in options:
        assert expected.startswith("--motion must be between 0 and 1")


def test_a_blank_drawing_gets_the_command_lines_message(client, cli, tmp_path):
    """An untouched canvas is refused before it is queued, as ``flipsketch animate`` refuses
    a blank file."""
    (tmp_path / "blank.png").write_bytes(drawing_png(blank=True))
    said = cli("animate", "blank.png", "a fish", cwd=tmp_path)
    assert said.returncode == 2 and "blank" in said.stderr

    response = submit(client, sketch=drawing_png(blank=True), name="blank.png")
    assert response.status_code == 400
    assert response.json() == {"error": said.stderr.removeprefix("error: ").strip()}
    assert client.get("/api/info").json()["queue"] == {"running": 0, "waiting": 0}


def test_too_many_samples_are_refused(client, web):
    from flipsketch_web.options import MAX_SAMPLES

    response = submit(client, samples=str(MAX_SAMPLES + 1))
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"--samples must be at most {MAX_SAMPLES}")
    response = submit(client, samples="100000")
    assert response.status_code == 400
    assert client.get("/api/info").json()["queue"] == {"running": 0, "waiting": 0}


def test_a_frame_count_the_model_cannot_take_is_refused(client, monkeypatch):
    """``check_resources`` runs before the job is queued, as on the command line."""
    import flipsketch.api
    from flipsketch.errors import SettingsError

    def refuse(model, settings, size=512, **_):
        raise SettingsError("num_frames", f"must be at most 2 with model '{model}'")

    monkeypatch.setattr(flipsketch.api, "check_resources", refuse)
    response = submit(client)
    assert response.status_code == 400
    assert response.json()["error"].startswith("--frames must be at most 2 with model")
    assert client.get("/api/info").json()["queue"] == {"running": 0, "waiting": 0}


def test_a_foreign_host_is_refused(client, web):
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 still names its own
    host, and is refused; the server's own names are served."""
    assert client.get("/api/info", headers={"Host": "evil.example"}).status_code == 400
    response = client.post("/api/jobs", data={"prompt": "x", **FAST},
                           headers={"Host": "evil.example:7860"})
    assert response.status_code == 400
    for host in ("localhost:7860", "127.0.0.1:7860", "[::1]:7860"):
        assert client.get("/api/info", headers={"Host": host}).status_code == 200, host
    # The test client's name is allowed only because the test passed it.
    from starlette.testclient import TestClient

    assert TestClient(web.create_app("unused")).get("/api/info").status_code == 400
    assert web.allowed_hosts("0.0.0.0") == ["*"]
    assert "192.168.1.5" in web.allowed_hosts("192.168.1.5")


def test_a_body_without_a_length_is_refused(client):
    """A chunked body cannot be measured before it is read: 411, not an unbounded read."""
    def chunks():
        yield b"prompt=a+fish&steps=2"

    response = client.post("/api/jobs", content=chunks(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 411 and "Content-Length" in response.json()["error"]
    assert client.get("/api/info").json()["queue"] == {"running": 0, "waiting": 0}


def test_other_mistakes_are_one_line_4xx(client, web):
    assert submit(client, prompt="  ").json() == {
        "error": "the prompt is empty; describe the motion, e.g. 'a fish swimming'"}
    response = submit(client, model="modelscope")
    assert response.status_code == 400 and "when the server starts" in response.json()["error"]
    assert submit(client, colour="red").json()["error"].startswith(
        "the form field 'colour' is not known; the fields are prompt, sketch, ")
    # A typo is named as it was sent, with the field it was meant to be; no command-line dashes.
    response = submit(client, stepz="3")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("the form field 'stepz' is not known (did you mean 'steps'?); ")
    assert "--" not in error and "No such option" not in error
    huge = b"\0" * (web.MAX_UPLOAD_BYTES + 2 ** 21)
    response = submit(client, sketch=huge, name="huge.png")
    assert response.status_code == 413 and "MB" in response.json()["error"]
    # Another site's page cannot post to this one.
    response = client.post("/api/jobs", data={"prompt": "x", **FAST},
                           headers={"Origin": "https://example.com"})
    assert response.status_code == 403
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.get("/api/jobs/nope/events").status_code == 404
    assert client.get("/api/info").json()["queue"] == {"running": 0, "waiting": 0}


# -- one job at a time, cancel ---------------------------------------------------------------
def test_the_queue_runs_one_job_at_a_time(client):
    first = submit(client, sketch=drawing_png()).json()
    second = submit(client, sketch=drawing_png(), seed="1").json()
    assert second["position"] == 1  # the first is ahead of it, queued or running

    stream = events(client, second["id"])
    # Second in line, then next (the first has finished), then its turn.
    assert [(d["state"], d["position"]) for _, kind, d in stream if kind == "state"] == [
        ("queued", 1), ("queued", 0), ("running", 0), ("done", None)]
    one = client.get(f"/api/jobs/{first['id']}").json()
    two = client.get(f"/api/jobs/{second['id']}").json()
    assert one["state"] == two["state"] == "done"
    assert one["finished"] <= two["started"]


def test_cancel_a_waiting_and_a_running_job(client):
    running = submit(client, sketch=drawing_png(), steps="60").json()
    waiting = submit(client, sketch=drawing_png(), seed="3").json()
    assert waiting["position"] == 1

    # A waiting job leaves the queue at once and never runs.
    response = client.post(waiting["urls"]["cancel"])
    assert response.status_code == 202
    assert states(events(client, waiting["id"])) == ["queued", "cancelled"]

    # A running job stops at its next step.
    wait_for(client, running["id"], lambda r: (r["progress"] or {}).get("stage") == "sampling")
    assert client.delete(running["urls"]["self"]).status_code == 202
    stream = events(client, running["id"])
    assert states(stream)[-1] == "cancelled"
    record = client.get(running["urls"]["self"]).json()
    assert record["result"] is None and record["progress"]["done"] < 60
    assert client.post(running["urls"]["cancel"]).status_code == 409

    # The model is left clean: the next job runs as any other.
    after = submit(client, sketch=drawing_png()).json()
    assert states(events(client, after["id"]))[-1] == "done"


def test_the_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    info = client.get("/api/info").json()
    assert info["defaults"]["frames"] == 10 and "lambda" in info["options"]
    assert info["max_samples"] == 16
    assert {"gif", "mp4", "zip"} <= set(info["formats"])


def test_results_are_removed_when_the_app_stops(web, tiny_model_dir):
    from starlette.testclient import TestClient

    app = web.create_app(str(tiny_model_dir), extra_hosts=TEST_HOST)
    with TestClient(app) as client:
        job = submit(client, sketch=drawing_png()).json()
        assert states(events(client, job["id"]))[-1] == "done"
        folder = app.state.service.folder
        assert any(folder.rglob("animation.gif"))
    assert not folder.exists()


def test_only_the_last_finished_jobs_are_kept(web, tiny_model_dir):
    """The oldest finished job is forgotten, and its files removed, once more than
    ``keep_finished`` have finished."""
    from starlette.testclient import TestClient

    app = web.create_app(str(tiny_model_dir), extra_hosts=TEST_HOST, keep_finished=1)
    with TestClient(app) as client:
        first = submit(client, sketch=drawing_png()).json()
        assert states(events(client, first["id"]))[-1] == "done"
        results = app.state.service.folder / "results"
        assert (results / first["id"]).is_dir()
        second = submit(client, prompt="a ball bouncing").json()
        assert states(events(client, second["id"]))[-1] == "done"
        assert client.get(f"/api/jobs/{first['id']}").status_code == 404
        assert not (results / first["id"]).exists()
        assert client.get(f"/api/jobs/{second['id']}").json()["state"] == "done"
        assert [job["id"] for job in client.get("/api/jobs").json()] == [second["id"]]


# -- the command -------------------------------------------------------------------------------
def test_serve_is_a_plugin_command(cli):
    assert json.loads(cli("plugins", "--json").stdout)["commands"]["serve"] == "web"
    assert "--port" in cli("serve", "--help").stdout


def test_a_port_in_use_is_a_one_line_error(cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port} (")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow
def test_serve_warns_off_localhost_and_cleans_up_on_ctrl_c(tiny_model_dir, tmp_path):
    """A real process: the warning, the address line once the server answers, and Ctrl-C
    removing the results folder."""
    import httpx

    temp = tmp_path / "temp"
    temp.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "flipsketch", "serve", "--host", "0.0.0.0", "--port", "0",
         "--model", str(tiny_model_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(temp)})
    try:
        line = process.stdout.readline()
        assert line.startswith("flipsketch serving model"), process.stderr.read()
        url = line.split(" on ")[1].split()[0]
        assert httpx.get(url + "api/info").json()["model"] == str(tiny_model_dir)
        assert [p.name.startswith("flipsketch-web-") for p in temp.iterdir()] == [True]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "warning: serving on 0.0.0.0: anyone on the network" in err
    assert "stopped" in out
    assert list(temp.iterdir()) == []


def test_readme_documents_every_route():
    readme = (Path(__file__).resolve().parents[1] /
              "README.md").read_text(encoding="utf-8")
    for route in ("POST /api/jobs", "GET /api/jobs/{id}", "GET /api/jobs/{id}/events",
                  "POST /api/jobs/{id}/cancel", "GET /api/info", "curl"):
        assert route in readme, route
