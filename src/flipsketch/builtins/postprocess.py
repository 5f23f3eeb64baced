"""The ``binarize``, ``lineart`` and ``raw`` post-processors (``flipsketch.frames.postprocess``)."""

from flipsketch.frames.postprocess import binarize, lineart, raw
from flipsketch.plugins import Register, hookimpl


@hookimpl
def register_postprocessors(register: Register) -> None:
    register("binarize", binarize)
    register("lineart", lineart)
    register("raw", raw)
