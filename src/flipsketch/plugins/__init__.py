"""The plugin system: everything a plugin author imports, from one place.

    from flipsketch.plugins import PostprocessSettings, hookimpl

    @hookimpl
    def register_postprocessors(register):
        register("sepia", lambda frames, settings: frames)

``hookspecs`` documents each hook, ``types`` the exact signature of what each registers, and
``manager`` holds the table of stages (``STAGES``) and the manager that fills their
registries. This package is the lowest layer of flipsketch: it imports none of the sampler,
model, frame or recipe modules when it loads.
"""

from flipsketch.plugins.hookspecs import Register, hookimpl, hookspec
from flipsketch.plugins.manager import (
    BUILTIN_PLUGINS,
    COMMANDS_HOOK,
    ENTRY_POINT_GROUP,
    OFF,
    STAGES,
    BrokenPlugin,
    LoadedPlugin,
    PluginManager,
    Registry,
    Stage,
    get_manager,
    writer_suffix_clashes,
)
from flipsketch.plugins.types import (
    ALIGN_OPTIMIZERS,
    COMPOSE_MODES,
    DEFAULT_FPS,
    DEFAULT_LAMBDA,
    DEFAULT_SIZE,
    LAMBDA_RULE_KEY,
    LAMBDA_RULES,
    LAMBDA_SCALE_KEY,
    PAPER_LAMBDA_SCALE,
    Aligner,
    AlignSettings,
    Backbone,
    Clip,
    Composer,
    Composition,
    CompositionSettings,
    Field,
    Interpolator,
    Inverter,
    PostProcessor,
    PostprocessSettings,
    SketchEncoding,
    StepError,
    StepType,
    Writer,
    method_windows,
    sketch_encoding,
)

__all__ = [
    "ALIGN_OPTIMIZERS", "BUILTIN_PLUGINS", "COMMANDS_HOOK", "COMPOSE_MODES", "DEFAULT_FPS",
    "DEFAULT_LAMBDA", "DEFAULT_SIZE", "ENTRY_POINT_GROUP", "LAMBDA_RULE_KEY", "LAMBDA_RULES",
    "LAMBDA_SCALE_KEY", "OFF", "PAPER_LAMBDA_SCALE", "STAGES",
    "AlignSettings",
    "Aligner", "Backbone", "BrokenPlugin", "Clip", "Composer", "Composition",
    "CompositionSettings", "Field", "Interpolator", "Inverter", "LoadedPlugin", "PluginManager",
    "PostProcessor", "PostprocessSettings", "Register", "Registry", "SketchEncoding", "Stage",
    "StepError", "StepType", "Writer", "get_manager", "hookimpl", "hookspec", "method_windows",
    "sketch_encoding", "writer_suffix_clashes",
]
