"""The ``flow`` interpolator: optical-flow in-between frames (``flipsketch.frames.interpolate``)."""

from flipsketch.frames.interpolate import flow_interpolate
from flipsketch.plugins import Register, hookimpl


@hookimpl
def register_interpolators(register: Register) -> None:
    register("flow", flow_interpolate)
