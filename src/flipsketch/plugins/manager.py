"""The plugin manager: entry points in, named stage registries out.

Plugins are modules listed under the ``flipsketch`` entry-point group (see ``hookspecs``).
``FLIPSKETCH_LOAD_PLUGINS`` (comma-separated entry-point names; empty means none) limits which
third-party plugins load; the package's own plugins always load, since without them there is
no sampler. A plugin that fails to import or raises while registering is reported by name as
a ``PluginError``.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from flipsketch.errors import PluginError
from flipsketch.plugins import hookspecs

ENTRY_POINT_GROUP = "flipsketch"
OWN_DISTRIBUTION = "flipsketch"

# stage name -> (hook that fills it, default implementation name or None)
STAGES: dict[str, tuple[str, str | None]] = {
    "backbone": ("register_backbones", "modelscope"),
    "inverter": ("register_inverters", "ddim"),
    "aligner": ("register_aligners", "gradient"),
    "composer": ("register_composers", "flipsketch"),
    "postprocessor": ("register_postprocessors", "lineart"),
    "writer": ("register_writers", "gif"),
    "recipe_step": ("register_recipe_steps", None),
    "interpolator": ("register_interpolators", "flow"),
}

# Stages that may be switched off by naming "none".
OPTIONAL_STAGES = {"aligner", "composer"}


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
            hint = " or 'none'" if self.stage in OPTIONAL_STAGES else ""
            raise PluginError(f"unknown {self.stage} '{name}'; choose one of: {known}{hint}")
        return self.impls[name]


class PluginManager:
    """Loads plugins once and answers "which implementation is called NAME for STAGE"."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("flipsketch")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[LoadedPlugin] = []
        self._registries: dict[str, Registry] | None = None
        if load_entry_points:
            self._load_entry_points()

    # -- loading -----------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        allowed = _allowed_third_party()
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(entry_points, key=lambda e: (e.dist.name != OWN_DISTRIBUTION, e.name)):
            dist = ep.dist.name if ep.dist else "?"
            builtin = dist == OWN_DISTRIBUTION
            if not builtin and allowed is not None and ep.name not in allowed:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not look like our bug
                raise PluginError(
                    f"plugin '{ep.name}' ({dist}) failed to import: {type(exc).__name__}: {exc}; "
                    f"fix or uninstall it, or exclude it with FLIPSKETCH_LOAD_PLUGINS"
                ) from exc
            version = ep.dist.version if ep.dist else "?"
            self.register(module, name=ep.name, distribution=dist, version=version,
                          builtin=builtin)

    def register(self, plugin: ModuleType | object, name: str | None = None,
                 distribution: str = "(registered in code)", version: str = "",
                 builtin: bool = False) -> None:
        """Add a plugin object (module or instance with hookimpls); used by tests and apps."""
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
        if name == "none" and stage in OPTIONAL_STAGES:
            return None
        return self.registry(stage).get(name)

    def _build_registries(self) -> dict[str, Registry]:
        registries = {stage: Registry(stage, default) for stage, (_, default) in STAGES.items()}
        for stage, (hook_name, _) in STAGES.items():
            registry = registries[stage]
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
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
                        f"plugin '{owner}' raised in {hook_name}: {type(exc).__name__}: {exc}"
                    ) from exc
        return registries

    def describe(self) -> dict[str, Any]:
        """What ``flipsketch plugins --json`` prints."""
        return {
            "plugins": [p.__dict__ for p in self.plugins],
            "stages": {
                stage: {
                    "default": self.registry(stage).default,
                    "implementations": {
                        name: self.registry(stage).owners[name]
                        for name in sorted(self.registry(stage).impls)
                    },
                }
                for stage in STAGES
            },
        }


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
