"""``flipsketch serve``: bind the port, load the model, serve the app with uvicorn.

The order is the user's: a port that is taken or a model that cannot load is a one-line error
before anything is served, and the page's address is printed only once it answers.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import webbrowser

from flipsketch.errors import UsageError, warn

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port``, or the one-line reason there is none."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise UsageError(f"--host '{host}' is not an address of this machine ({exc.strerror}); "
                         f"pass 127.0.0.1 or 0.0.0.0") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another "
                         f"--port, or stop what uses it") from None
    return sock


def serve(host: str, port: int, model: str | None, device: str | None, dtype: str | None,
          open_browser: bool, max_waiting: int) -> None:
    import uvicorn
    from rich.console import Console

    from flipsketch.api import default_model, load_pipeline
    from flipsketch_web.app import create_app

    if max_waiting < 1:
        raise UsageError("--queue must be at least 1")
    model = model or default_model()
    sock = bind(host, port)
    port = sock.getsockname()[1]  # --port 0: the one the system chose
    url = url_of(host, port)
    if host not in LOCAL_HOSTS:
        warn(f"serving on {host}: anyone on the network who can reach this machine can use "
             f"the page and its model; pass --host 127.0.0.1 to keep it to this machine")
    with Console(stderr=True).status(f"loading model '{model}'"):  # gone once it has loaded
        pipe = load_pipeline(model, device=device, dtype=dtype)
    app = create_app(model, pipe=pipe, device=device, dtype=dtype, max_waiting=max_waiting,
                     host=host)
    # An open event stream must not keep Ctrl-C waiting for a job to end: after 3 s the
    # remaining connections are closed and the app's shutdown cancels the job.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           timeout_graceful_shutdown=3))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            print(f"flipsketch serving model '{model}' on {url} (Ctrl-C to stop)", flush=True)
            if open_browser:
                webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly
        pass
    if not server.started:
        sys.exit(1)  # uvicorn has said why
    print("flipsketch serve stopped; its results were removed", flush=True)
