"""The ``modelscope`` backbone (``flipsketch.models.backbone``)."""

from flipsketch.models.backbone import load_modelscope
from flipsketch.plugins import Register, hookimpl


@hookimpl
def register_backbones(register: Register) -> None:
    register("modelscope", load_modelscope)
