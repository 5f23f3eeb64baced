"""flipsketch's own plugins: every built-in stage implementation is registered here, and only
here, through the same hooks a third-party plugin implements (as llm's ``default_plugins``).

One module per plugin, named as ``flipsketch plugins`` lists it; the algorithms stay in their
own modules (``sampler``, ``models``, ``frames``, ``recipes``) and know nothing of the plugin
system. Each is listed under the ``flipsketch`` entry-point group in pyproject.toml, as a
third-party plugin is, and named in ``flipsketch.plugins.BUILTIN_PLUGINS``: the manager loads
them lazily (they load torch), before any third-party plugin.
"""
