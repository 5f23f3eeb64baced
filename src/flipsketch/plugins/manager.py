"""The plugin manager: built-ins and entry points in, named stage registries out.

``STAGES`` is the one table of stages: the hook that fills each, the type its implementations
have, its default and whether ``none`` switches it off. The manager, the CLI and the recipes
all read it.

The package's own stage modules (``BUILTIN_PLUGINS``) are imported by module name and
registered first, so a source tree works whether or not its entry points were reinstalled
after a module moved. Third-party plugins are modules listed under the ``flipsketch`` entry-point
group (see ``hookspecs``); ``FLIPSKETCH_LOAD_PLUGINS`` (comma-separated entry-point names;
empty means none) limits which of them load. A plugin that fails to import or raises while
registering is reported by name as a ``PluginError``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from flipsketch.errors import PluginError
from flipsketch.plugins import hookspecs
from flipsketch.plugins.types import (
    Aligner,
    Backbone,
    Composer,
    Interpolator,
    Inverter,
    PostProcessor,
    StepType,
    Writer,
)

ENTRY_POINT_GROUP = "flipsketch"
OFF = "none"  # the name that switches a stage that can be off, off
OWN_DISTRIBUTION = "flipsketch"


@dataclass(frozen=True)
class Stage:
    """One replaceable stage of a run."""

    name: str  # what registries, option names, messages and `flipsketch plugins` call it
    hook: str  # the hookspec in ``hookspecs`` that fills its registry
    protocol: type  # what an implementation is (``flipsketch.plugins.types``)
    default: str | None  # used when a run names none; None: a name is always given
    can_be_off: bool = False  # naming "none" skips the stage
    sampler: bool = False  # named by a sampler option (``api.animate``, recipe sampler steps)


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("backbone", "register_backbones", Backbone, "modelscope"),
    Stage("inverter", "register_inverters", Inverter, "ddim", sampler=True),
    Stage("aligner", "register_aligners", Aligner, "gradient", can_be_off=True, sampler=True),
    Stage("composer", "register_composers", Composer, "flipsketch", can_be_off=True,
          sampler=True),
    Stage("postprocessor", "register_postprocessors", PostProcessor, "lineart"),
    Stage("writer", "register_writers", Writer, "gif"),
    Stage("recipe_step", "register_recipe_steps", StepType, None),
    Stage("interpolator", "register_interpolators", Interpolator, "flow"),
)}

# The package's own plugins: plugin name (as messages and `flipsketch plugins` show it) ->
# module. pyproject.toml lists the same pairs under [project.entry-points.flipsketch] (a test
# keeps the two equal), so that tools reading the group see them; the manager skips those
# entries, having registered the modules already.
BUILTIN_PLUGINS: dict[str, str] = {
    "backbone": "flipsketch.models.backbone",
    "inversion": "flipsketch.sampler.inversion",
    "alignment": "flipsketch.sampler.alignment",
    "attention": "flipsketch.sampler.attention",
    "postprocess": "flipsketch.frames.postprocess",
    "writers": "flipsketch.frames.writers",
    "recipes": "flipsketch.recipes.steps",
    "interpolate": "flipsketch.frames.interpolate",
}


@dataclass
class LoadedPlugin:
    """One plugin module as ``flipsketch plugins`` lists it."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool


@dataclass
class Registry:
    """Named implementations of one stage, with the plugin that registered each."""

    stage: str
    default: str | None
    impls: dict[str, Any] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)

    def get(self, name: str | None) -> Any:
        name = name or self.default
        if name is None:
            raise PluginError(f"no {self.stage} named; pass one of: {', '.join(self.impls)}")
        if name not in self.impls:
            known = ", ".join(sorted(self.impls)) or "(none registered)"
            hint = " or 'none'" if STAGES[self.stage].can_be_off else ""
            raise PluginError(f"unknown {self.stage} '{name}'; choose one of: {known}{hint}")
        return self.impls[name]


class PluginManager:
    """Loads plugins once and answers "which implementation is called NAME for STAGE"."""

    def __init__(self, load_entry_points: bool = True) -> None:
        """The built-in plugins always load; ``load_entry_points=False`` leaves out every
        installed third-party plugin (tests use it to see only what the package ships)."""
        self.pm = pluggy.PluginManager("flipsketch")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[LoadedPlugin] = []
        self._registries: dict[str, Registry] | None = None
        self._load_builtins()
        if load_entry_points:
            self._load_entry_points()

    # -- loading -----------------------------------------------------------------------
    def _load_builtins(self) -> None:
        from flipsketch import __version__  # here: flipsketch/__init__ imports this package

        for name, module_name in BUILTIN_PLUGINS.items():
            module = _load_plugin(name, OWN_DISTRIBUTION,
                                  functools.partial(importlib.import_module, module_name),
                                  fix="reinstall flipsketch with its dependencies")
            self.register(module, name=name, distribution=OWN_DISTRIBUTION,
                          version=__version__, builtin=True)

    def _load_entry_points(self) -> None:
        allowed = _allowed_third_party()
        registered = {p.module for p in self.plugins}
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                         key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "?"
            # Our own entries name the built-ins, registered above; an entry left over from
            # an older install may name a module that has since moved.
            if dist == OWN_DISTRIBUTION or ep.module in registered:
                continue
            if allowed is not None and ep.name not in allowed:
                continue
            module = _load_plugin(ep.name, dist, ep.load, fix="fix or uninstall it, or "
                                  "exclude it with FLIPSKETCH_LOAD_PLUGINS")
            version = ep.dist.version if ep.dist else "?"
            self.register(module, name=ep.name, distribution=dist, version=version)

    def register(self, plugin: ModuleType | object, name: str | None = None,
                 distribution: str = "(registered in code)", version: str = "",
                 builtin: bool = False) -> None:
        """Add a plugin object (module or instance with hookimpls); used by tests and apps.

        Registering an object that is already registered (a built-in module, say) does
        nothing, so code can make sure of a plugin without asking first.
        """
        if self.pm.is_registered(plugin):
            return
        name = name or getattr(plugin, "__name__", type(plugin).__name__)
        self.pm.register(plugin, name=name)
        module = getattr(plugin, "__name__", type(plugin).__module__)
        self.plugins.append(LoadedPlugin(name, module, distribution, version, builtin))
        self._registries = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.plugins = [p for p in self.plugins if p.name != name]
        self._registries = None

    # -- registries --------------------------------------------------------------------
    def registry(self, stage: str) -> Registry:
        if self._registries is None:
            self._registries = self._build_registries()
        return self._registries[stage]

    def get(self, stage: str, name: str | None = None) -> Any:
        """The implementation of ``stage`` called ``name`` (default when None).

        Returns None for ``none`` on stages that can be switched off.
        """
        if name == OFF and STAGES[stage].can_be_off:
            return None
        return self.registry(stage).get(name)

    def _build_registries(self) -> dict[str, Registry]:
        registries = {}
        for stage in STAGES.values():
            registry = registries[stage.name] = Registry(stage.name, stage.default)
            hook = getattr(self.pm.hook, stage.hook)
            for impl in hook.get_hookimpls():  # in registration order: built-ins first
                owner = self.pm.get_name(impl.plugin) or "?"

                def register(name: str, value: Any, _owner: str = owner,
                             _registry: Registry = registry) -> None:
                    if name in _registry.impls:
                        raise PluginError(
                            f"plugin '{_owner}' registers {_registry.stage} '{name}', already "
                            f"registered by '{_registry.owners[name]}'; uninstall one of them"
                        )
                    _registry.impls[name] = value
                    _registry.owners[name] = _owner

                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin '{owner}' raised in {stage.hook}: {type(exc).__name__}: {exc}"
                    ) from exc
        return registries

    def describe(self) -> dict[str, Any]:
        """What ``flipsketch plugins --json`` prints."""
        stages = {}
        for stage in STAGES.values():
            registry = self.registry(stage.name)
            stages[stage.name] = {
                "default": registry.default,
                "can_be_off": stage.can_be_off,
                "hook": stage.hook,
                "type": f"flipsketch.plugins.{stage.protocol.__name__}",
                "implementations": {name: registry.owners[name] for name in sorted(registry.impls)},
            }
        return {
            "plugins": [p.__dict__ for p in self.plugins],
            "stages": stages,
            "writer_suffix_clashes": writer_suffix_clashes(self.registry("writer")),
        }


def writer_suffix_clashes(registry: Registry) -> list[dict[str, Any]]:
    """Suffixes that more than one writer claims, each with the writer an output name gets.

    The rule is ``flipsketch.frames.writers``': the first registered writer claiming a suffix
    wins it (built-ins register first). Different suffixes never clash: the longest suffix of
    a name picks its writer, so ".sheet.png" and ".png" live side by side.
    """
    claims: dict[str, list[str]] = {}
    for name, writer in registry.impls.items():  # registration order
        for suffix in dict.fromkeys(s.lower() for s in writer.suffixes):
            claims.setdefault(suffix, []).append(name)
    return [
        {"suffix": suffix, "writers": writers, "wins": writers[0],
         "owners": [registry.owners[w] for w in writers]}
        for suffix, writers in sorted(claims.items()) if len(writers) > 1
    ]


def _load_plugin(name: str, distribution: str, load: Callable[[], Any], fix: str) -> Any:
    """``load()`` a plugin; an import failure is reported as the plugin's, not as our bug."""
    try:
        return load()
    except Exception as exc:
        raise PluginError(f"plugin '{name}' ({distribution}) failed to import: "
                          f"{type(exc).__name__}: {exc}; {fix}") from exc


def _allowed_third_party() -> set[str] | None:
    value = os.environ.get("FLIPSKETCH_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


_manager: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide plugin manager, loaded on first use."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager
