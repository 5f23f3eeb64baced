"""The plugin system: hook specifications, the manager that fills stage registries from them."""

from flipsketch.plugins.hookspecs import Register, hookimpl, hookspec
from flipsketch.plugins.manager import (
    ENTRY_POINT_GROUP,
    OPTIONAL_STAGES,
    STAGES,
    LoadedPlugin,
    PluginManager,
    Registry,
    get_manager,
)

__all__ = ["ENTRY_POINT_GROUP", "OPTIONAL_STAGES", "STAGES", "LoadedPlugin", "PluginManager",
           "Register", "Registry", "get_manager", "hookimpl", "hookspec"]
