"""flipsketch-web: ``flipsketch serve``, a page to doodle, describe the motion and watch it move.

The whole feature rides on the plugin command hook: this module adds ``serve`` to
``flipsketch`` and imports nothing heavy at the top, because the hook runs each time
``flipsketch`` starts (``--help`` included); the server, the model and torch load when
``serve`` runs.
"""

from __future__ import annotations

import typer

from flipsketch.plugins import hookimpl

DEFAULT_PORT = 7860


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    @cli.command()
    def serve(
        host: str = typer.Option(
            "127.0.0.1", "--host",
            help="Address to listen on. Anything but localhost lets others on the network "
                 "use the page."),
        port: int = typer.Option(DEFAULT_PORT, "--port", help="Port; 0 picks a free one."),
        model: str | None = typer.Option(
            None, "--model",
            help="Preset (tiny, modelscope-sketch, modelscope), local folder or hub id. "
                 "Default: $FLIPSKETCH_MODEL, else 'flipsketch models default', else tiny."),
        device: str | None = typer.Option(
            None, "--device", help="cpu, cuda, cuda:N or mps. Default: the best available."),
        dtype: str | None = typer.Option(
            None, "--dtype", help="fp32, bf16 or fp16. Default: fp32 on CPU, bf16 on CUDA."),
        queue: int = typer.Option(8, "--queue", help="Jobs that may wait behind the running "
                                                     "one."),
        open_browser: bool = typer.Option(
            False, "--open", help="Open the page in the browser once the server is up."),
    ) -> None:
        """Serve a web page: draw, describe the motion, watch it move (Ctrl-C to stop)."""
        from flipsketch_web.server import serve as run

        run(host, port, model, device, dtype, open_browser, queue)
