"""The page in a real browser: headless Chromium (the system's, driven by Playwright) opens
``flipsketch serve`` on localhost, draws with the mouse, types a prompt, clicks Generate and
waits for the animation; the GIF it links to decodes to the frames asked for.

Chromium comes from the system (Debian's ``chromium``, installed by ``.ci/run``), never from
``playwright install``: the test skips, saying why, only where there is no Chromium or no
Playwright. A screenshot of the finished page is saved in the test's folder, and also to
``$FLIPSKETCH_SCREENSHOT`` when that is set: then the page runs the shipped ``tiny`` model at
25 steps, so the screenshot shows a real result (how docs/web.png is made, from the
repository's root: ``FLIPSKETCH_SCREENSHOT=docs/web.png python -m pytest
plugins/flipsketch-web/tests/test_web_browser.py``).
"""

from __future__ import annotations

import io
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow

SCREENSHOT = os.environ.get("FLIPSKETCH_SCREENSHOT")
FRAMES = 10


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine (apt-get install chromium; .ci/run does)")


@pytest.fixture
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="playwright is not installed (pip install -e 'plugins/flipsketch-web[test]')")
    executable = chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable,
                                             args=["--no-sandbox"])
        yield browser
        browser.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tiny_model_dir, tmp_path):
    """``flipsketch serve`` in its own process, as a user starts it; its address once the port
    answers (the model is loaded before the port opens)."""
    port = free_port()
    model = "tiny" if SCREENSHOT else str(tiny_model_dir)
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "flipsketch", "serve", "--port", str(port), "--model", model],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the server did not start:\n{(tmp_path / 'server.log').read_text()}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/"
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


def draw_fish(page) -> None:
    """A fish drawn with the mouse: an oval body, a tail, an eye, as a person would."""
    box = page.locator("#canvas").bounding_box()
    x0, y0, size = box["x"], box["y"], box["width"]

    def at(u: float, v: float) -> tuple[float, float]:  # canvas fractions -> page pixels
        return x0 + u * size, y0 + v * size

    def stroke(points: list[tuple[float, float]]) -> None:
        page.mouse.move(*at(*points[0]))
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*at(*point), steps=3)
        page.mouse.up()

    stroke([(0.45 + 0.25 * math.cos(t / 24 * 2 * math.pi),
             0.5 + 0.15 * math.sin(t / 24 * 2 * math.pi)) for t in range(25)])
    stroke([(0.2, 0.5), (0.08, 0.38), (0.08, 0.62), (0.2, 0.5)])
    stroke([(0.6, 0.46), (0.605, 0.465)])


def test_draw_describe_generate_watch(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    page.goto(server)
    page.wait_for_selector("body[data-ready=true]")

    # A file that is no image gets the command line's one-line message, on the page.
    page.set_input_files("#upload", files=[{"name": "notes.png", "mimeType": "image/png",
                                            "buffer": b"not a picture"}])
    page.fill("#prompt", "a fish swimming to the right")
    page.click("#generate")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.inner_text() == ("sketch 'notes.png' is not an image (cannot identify image "
                                  "file); pass a PNG/JPEG/WebP drawing")

    page.click("#clear")
    draw_fish(page)
    assert not page.locator("#undo").is_disabled()
    page.click("#advanced summary")
    page.fill("#frames", str(FRAMES))
    page.fill("#steps", "25" if SCREENSHOT else "2")
    page.click("#generate")
    page.locator("#result").wait_for(state="visible", timeout=600_000)

    assert page.locator("#error").is_hidden()
    assert page.locator("#result").get_attribute("data-frames") == str(FRAMES)
    assert page.locator("#gallery li").count() == 1
    links = {a.get_attribute("data-kind"): a.get_attribute("href")
             for a in page.locator("#downloads a").all()}
    assert {"gif", "mp4", "zip"} <= set(links)
    gif = page.request.get(server.rstrip("/") + links["gif"])
    assert gif.ok and gif.headers["content-type"] == "image/gif"
    with Image.open(io.BytesIO(gif.body())) as image:
        assert image.n_frames == FRAMES
    assert page.locator("#result-img").evaluate("img => img.complete && img.naturalWidth") > 0

    page.screenshot(path=tmp_path / "web.png", full_page=True)
    if SCREENSHOT:
        Path(SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOT, full_page=True)
