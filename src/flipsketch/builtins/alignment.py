"""The ``gradient`` aligner: iterative frame alignment (``flipsketch.sampler.alignment``)."""

from flipsketch.plugins import Register, hookimpl
from flipsketch.sampler.alignment import gradient_align


@hookimpl
def register_aligners(register: Register) -> None:
    register("gradient", gradient_align)
