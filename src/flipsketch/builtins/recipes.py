"""The recipe step types (``flipsketch.recipes.steps.BUILTIN_STEPS``)."""

from flipsketch.plugins import Register, hookimpl
from flipsketch.recipes.steps import BUILTIN_STEPS


@hookimpl
def register_recipe_steps(register: Register) -> None:
    for name, step_type in BUILTIN_STEPS.items():
        register(name, step_type)
