"""The ``ddim`` inverter and its variants that encode the drawing as the authors' demo did
(``flipsketch.sampler.inversion``)."""

from flipsketch.plugins import Register, hookimpl
from flipsketch.sampler.inversion import DEMO_ENCODINGS, EncodedInverter, ddim_invert


@hookimpl
def register_inverters(register: Register) -> None:
    register("ddim", ddim_invert)
    for name, encoding in DEMO_ENCODINGS.items():
        register(name, EncodedInverter(ddim_invert, encoding))
