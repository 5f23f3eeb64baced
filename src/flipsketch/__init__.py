"""flipsketch: turn a static drawing plus a sentence into a hand-drawn animation."""

from flipsketch.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
