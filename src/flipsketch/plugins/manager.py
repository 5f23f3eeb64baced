"""The plugin manager: built-ins and entry points in, named stage registries out.

``STAGES`` is the one table of stages: the hook that fills each, the type its implementations
have, its default and whether ``none`` switches it off. The manager, the CLI and the recipes
all read it.

Every plugin is a module listed under the ``flipsketch`` entry-point group (see ``hookspecs``),
the package's own included: its built-ins (``BUILTIN_PLUGINS``, the modules of
``flipsketch.builtins``) load first, through flipsketch's own entries, when a stage is first
needed. ``FLIPSKETCH_LOAD_PLUGINS`` (comma-separated entry-point names; empty means none)
limits which third-party plugins load; the built-ins always do.

A third-party plugin that fails to import, raises while registering or clashes with a name
already taken is *contained*: it is left out whole and recorded in ``PluginManager.broken``
with its one-line error, so that one broken package cannot stop every command (including
``flipsketch plugins``, the one that diagnoses it). A broken built-in is still a
``PluginError``: without it flipsketch itself is broken.

The built-ins load lazily, when a registry or the plugin list is first asked for, because
they import torch: ``flipsketch --help`` loads the third-party plugins (their commands are
listed there) without waiting for it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from flipsketch.errors import PluginError, exception_line
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
# The hook through which plugins add commands: not a stage (it fills no registry), so it has
# no row in STAGES; the command line calls it (``flipsketch.cli.plugins``).
COMMANDS_HOOK = "register_commands"


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

# The package's own plugins, in the order they register: plugin name (as messages and
# `flipsketch plugins` show it) -> its module in ``flipsketch.builtins``, the one place the
# built-in implementations are registered. pyproject.toml lists the same pairs under
# [project.entry-points.flipsketch] (a test keeps them equal); named here as well so that the
# order is fixed and a checkout whose installed entry points are missing or stale (run from
# ``src`` without installing, or installed before a module moved) still has every stage.
# They import torch and the layers above this one, so they load only when first needed.
BUILTIN_PLUGINS: dict[str, str] = {name: f"flipsketch.builtins.{name}" for name in (
    "backbone", "inversion", "alignment", "attention", "postprocess", "writers", "recipes",
    "interpolate",
)}


def own_entry_points() -> list[importlib.metadata.EntryPoint]:
    """flipsketch's own entries in the plugin group, as installed (its built-ins)."""
    return [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            if ep.dist is not None and ep.dist.name == OWN_DISTRIBUTION]


@dataclass
class LoadedPlugin:
    """One plugin module as ``flipsketch plugins`` lists it."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool


@dataclass
class BrokenPlugin:
    """A third-party plugin left out because it failed; ``flipsketch plugins`` lists it."""

    name: str
    distribution: str
    version: str
    error: str  # one line: what went wrong, without the plugin's name
    # (stage, name) pairs it registered before it failed: a run asking for one of them is
    # told which plugin to fix instead of "unknown".
    provides: tuple[tuple[str, str], ...] = ()

    @property
    def message(self) -> str:
        """The full line: which plugin, what went wrong, and the fix."""
        return (f"plugin '{self.name}' ({self.distribution}) failed to load: {self.error}; "
                f"fix or uninstall it, or leave it out with FLIPSKETCH_LOAD_PLUGINS")

    @property
    def warning(self) -> str:
        """What a command other than ``flipsketch plugins`` prints, once, before going on."""
        return (f"plugin '{self.name}' failed to load ({self.error}); run 'flipsketch "
                f"plugins' for details")


@dataclass
class Registry:
    """Named implementations of one stage, with the plugin that registered each."""

    stage: str
    default: str | None
    impls: dict[str, Any] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    # The manager's broken plugins (the same list, so it stays current): an unknown name may
    # be one of theirs.
    broken: list[BrokenPlugin] = field(default_factory=list)

    def get(self, name: str | None) -> Any:
        name = name or self.default
        if name is None:
            raise PluginError(f"no {self.stage} named; pass one of: {', '.join(self.impls)}"
                              f"{self.broken_hint()}")
        if name not in self.impls:
            for plugin in self.broken:
                if (self.stage, name) in plugin.provides:
                    raise PluginError(
                        f"{self.stage} '{name}' comes from plugin '{plugin.name}', which failed "
                        f"to load ({plugin.error}); fix or uninstall it "
                        f"(see 'flipsketch plugins')")
            known = ", ".join(sorted(self.impls)) or "(none registered)"
            hint = " or 'none'" if STAGES[self.stage].can_be_off else ""
            raise PluginError(f"unknown {self.stage} '{name}'; choose one of: {known}{hint}"
                              f"{self.broken_hint()}")
        return self.impls[name]

    def broken_hint(self) -> str:
        """Appended to "unknown NAME" errors: a plugin that failed to load may be the cause."""
        if not self.broken:
            return ""
        names = ", ".join(f"'{p.name}'" for p in self.broken)
        return (f" (plugin {names} failed to load and may provide it; see "
                f"'flipsketch plugins')")


class _PluginFailed(Exception):
    """Raised inside ``_build_registries`` when a third-party plugin fails; never escapes."""

    def __init__(self, plugin: str, error: str, provides: list[tuple[str, str]]) -> None:
        super().__init__(error)
        self.plugin, self.error, self.provides = plugin, error, provides


class PluginManager:
    """Loads plugins once and answers "which implementation is called NAME for STAGE"."""

    def __init__(self, load_entry_points: bool = True) -> None:
        """The built-in plugins always load (when first needed); ``load_entry_points=False``
        leaves out every installed third-party plugin (tests use it to see only what the
        package ships)."""
        self.pm = pluggy.PluginManager("flipsketch")
        self.pm.add_hookspecs(hookspecs)
        self.broken: list[BrokenPlugin] = []
        # Command name -> the plugin that added it, filled by the command line.
        self.commands: dict[str, str] = {}
        # Called once per plugin found broken (the CLI prints a warning line); None: silent.
        self.on_broken: Callable[[BrokenPlugin], None] | None = None
        self._plugins: list[LoadedPlugin] = []
        self._builtins_loaded = False
        self._registries: dict[str, Registry] | None = None
        if load_entry_points:
            self._load_entry_points()

    @property
    def plugins(self) -> list[LoadedPlugin]:
        """Every loaded plugin, built-ins first, then in registration order."""
        self._load_builtins()
        return sorted(self._plugins, key=lambda p: not p.builtin)

    # -- loading -----------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        from flipsketch import __version__  # here: flipsketch/__init__ imports this package

        installed = {ep.name: ep for ep in own_entry_points()}
        current = {name: ep.value for name, ep in installed.items()} == BUILTIN_PLUGINS
        for name, module_name in BUILTIN_PLUGINS.items():
            try:
                module = (installed[name].load() if current
                          else importlib.import_module(module_name))
            except Exception as exc:  # flipsketch itself is broken: not contained
                raise PluginError(f"plugin '{name}' ({OWN_DISTRIBUTION}) failed to import: "
                                  f"{exception_line(exc)}; reinstall flipsketch with its "
                                  f"dependencies") from exc
            self._add(module, name, OWN_DISTRIBUTION, __version__, builtin=True)

    def _load_entry_points(self) -> None:
        allowed = _allowed_third_party()
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                         key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            if dist == OWN_DISTRIBUTION:  # the built-ins: loaded first, by _load_builtins
                continue
            if allowed is not None and ep.name not in allowed:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken package must not stop every command
                self._mark_broken(BrokenPlugin(ep.name, dist, version, exception_line(exc)))
                continue
            self._add(module, ep.name, dist, version)

    def register(self, plugin: ModuleType | object, name: str | None = None,
                 distribution: str = "(registered in code)", version: str = "",
                 builtin: bool = False) -> None:
        """Add a plugin object (module or instance with hookimpls); used by tests and apps.

        Registering an object that is already registered (a built-in module, say) does
        nothing, so code can make sure of a plugin without asking first.
        """
        self._load_builtins()
        self._add(plugin, name, distribution, version, builtin)

    def _add(self, plugin: ModuleType | object, name: str | None, distribution: str,
             version: str, builtin: bool = False) -> None:
        if self.pm.is_registered(plugin):
            return
        name = name or getattr(plugin, "__name__", type(plugin).__name__)
        self.pm.register(plugin, name=name)
        module = getattr(plugin, "__name__", type(plugin).__module__)
        self._plugins.append(LoadedPlugin(name, module, distribution, version, builtin))
        self._registries = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._plugins = [p for p in self._plugins if p.name != name]
        self._registries = None

    def mark_broken(self, name: str, error: str) -> None:
        """Leave out the loaded third-party plugin ``name`` whole, recording ``error`` (one
        line); the command line calls it for a plugin whose commands clash or raise."""
        [plugin] = [p for p in self._plugins if p.name == name]
        provides = tuple((stage, impl) for stage, registry in (self._registries or {}).items()
                         for impl, owner in registry.owners.items() if owner == name)
        self.unregister(name)
        self._mark_broken(BrokenPlugin(name, plugin.distribution, plugin.version, error,
                                       provides))

    def _mark_broken(self, broken: BrokenPlugin) -> None:
        self.broken.append(broken)
        if self.on_broken is not None:
            self.on_broken(broken)

    def hook_callers(self, hook: str) -> list[tuple[str, Callable[..., Any]]]:
        """(plugin name, hook function) of every loaded plugin implementing ``hook``, in
        registration order: for callers that contain each plugin's failure on their own."""
        return [(self.pm.get_name(impl.plugin) or "?", impl.function)
                for impl in getattr(self.pm.hook, hook).get_hookimpls()]

    # -- registries --------------------------------------------------------------------
    def registry(self, stage: str) -> Registry:
        if self._registries is None:
            self._load_builtins()
            while True:  # each failure leaves one plugin out; build again without it
                try:
                    self._registries = self._build_registries()
                    break
                except _PluginFailed as failed:
                    [plugin] = [p for p in self._plugins if p.name == failed.plugin]
                    self.unregister(failed.plugin)
                    self._mark_broken(BrokenPlugin(failed.plugin, plugin.distribution,
                                                   plugin.version, failed.error,
                                                   tuple(failed.provides)))
        return self._registries[stage]

    def get(self, stage: str, name: str | None = None) -> Any:
        """The implementation of ``stage`` called ``name`` (default when None).

        Returns None for ``none`` on stages that can be switched off.
        """
        if name == OFF and STAGES[stage].can_be_off:
            return None
        return self.registry(stage).get(name)

    def _build_registries(self) -> dict[str, Registry]:
        """Call every ``register_*`` hook; raises ``_PluginFailed`` for the first third-party
        plugin that raises or takes a name already registered (``registry`` leaves it out)."""
        builtin = {p.name for p in self._plugins if p.builtin}
        registries: dict[str, Registry] = {}
        for stage in STAGES.values():
            registry = registries[stage.name] = Registry(stage.name, stage.default,
                                                         broken=self.broken)
            # Built-ins first (they may load after the third-party plugins), then
            # registration order: of writers claiming one suffix, the first wins.
            for owner, function in sorted(self.hook_callers(stage.hook),
                                          key=lambda caller: caller[0] not in builtin):
                staged: dict[str, Any] = {}

                def register(name: str, value: Any, _owner: str = owner,
                             _registry: Registry = registry,
                             _staged: dict[str, Any] = staged) -> None:
                    if name in _registry.impls or name in _staged:
                        first = _registry.owners.get(name, _owner)
                        raise _Clash(f"registers {_registry.stage} '{name}', already "
                                     f"registered by '{first}'")
                    _staged[name] = value

                try:
                    function(register=register)
                except Exception as exc:
                    error = (str(exc) if isinstance(exc, _Clash)
                             else f"raised in {stage.hook}: {exception_line(exc)}")
                    if owner in builtin:
                        raise PluginError(f"plugin '{owner}' {error}; reinstall "
                                          f"flipsketch") from exc
                    provides = [(s, n) for s, r in registries.items()
                                for n, o in r.owners.items() if o == owner]
                    raise _PluginFailed(owner, error, provides + [
                        (stage.name, name) for name in staged]) from exc
                registry.impls.update(staged)
                registry.owners.update(dict.fromkeys(staged, owner))
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
            "broken": [{"name": p.name, "distribution": p.distribution, "version": p.version,
                        "error": p.error, "message": p.message} for p in self.broken],
            "commands": dict(sorted(self.commands.items())),
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


class _Clash(Exception):
    """A plugin registered a name another plugin (or it, earlier) already took."""


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
