"""The ``flipsketch`` composer: the paper's attention composition
(``flipsketch.sampler.attention``)."""

from flipsketch.plugins import Register, hookimpl
from flipsketch.sampler.attention import compose_attention


@hookimpl
def register_composers(register: Register) -> None:
    register("flipsketch", compose_attention)
