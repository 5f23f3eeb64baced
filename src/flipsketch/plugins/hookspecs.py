"""The hooks a flipsketch plugin can implement: the one documented place for each.

Every stage of a run is looked up by name in a registry that these hooks fill (the stages
are listed in ``flipsketch.plugins.STAGES``). A plugin is any module listed under the
``flipsketch`` entry-point group; it implements one or more of the hooks below with
``@flipsketch.plugins.hookimpl``. The package's own stage implementations are plugins too,
implementing the same hooks and filling the same registries (the modules of
``flipsketch.builtins``, which the manager imports first: ``BUILTIN_PLUGINS``), so a
third-party implementation is a peer of the built-in one, not a patch on top of it.

All ``register_*`` hooks share one calling convention: they are called once, when the plugin
manager first builds its registries, with a ``register(name, impl)`` callback. A hook may call
``register`` any number of times. Names are unique per stage: registering a name twice is an
error that names both plugins. Every hook's return value is ignored (so ``firstresult`` does
not apply); order between plugins does not matter, except that of writers claiming the same
suffix the first registered wins.

What ``impl`` must be, with its exact signature and tensor shapes, is the type each hook names,
in ``flipsketch.plugins.types`` and importable from ``flipsketch.plugins``.

``register_commands(cli)`` is the one hook that fills no stage: it adds commands to the
``flipsketch`` command line. docs/plugins.md is the guide, with an example of every hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

hookspec = pluggy.HookspecMarker("flipsketch")
hookimpl = pluggy.HookimplMarker("flipsketch")

Register = Callable[[str, Any], None]


@hookspec
def register_backbones(register: Register) -> None:
    """Register model loaders: each ``impl`` is a ``Backbone``.

    Called when a run needs a model. The loader gets ``--model`` as typed, before anything
    resolves it, so it decides which names it accepts. Default: ``modelscope``
    (diffusers-layout text-to-video models: presets, folders and hub ids).
    """


@hookspec
def register_inverters(register: Register) -> None:
    """Register sketch inverters (sketch latent -> reference noise): each ``impl`` is an
    ``Inverter``. Called once per run with a sketch, before sampling. Default: ``ddim``.
    """


@hookspec
def register_aligners(register: Register) -> None:
    """Register frame aligners (paper Sec. 4.2): each ``impl`` is an ``Aligner``, given an
    ``AlignSettings``.

    Called at every step i < tau_1. Default: ``gradient``; ``none`` skips the stage.
    """


@hookspec
def register_composers(register: Register) -> None:
    """Register attention composers (paper Sec. 4.3): each ``impl`` is a ``Composer``, given
    a ``CompositionSettings`` and returning a ``Composition``.

    Called once per run with a sketch. Default: ``flipsketch``; ``none`` skips the stage.
    """


@hookspec
def register_postprocessors(register: Register) -> None:
    """Register frame post-processors: each ``impl`` is a ``PostProcessor``, given a
    ``PostprocessSettings``.

    Called once per clip after decoding. Built in: ``lineart`` (the default: thinned strokes
    redrawn at the drawing's pen width), ``binarize`` (Otsu, black strokes on white) and
    ``raw`` (grey levels kept).
    """


@hookspec
def register_writers(register: Register) -> None:
    """Register output writers: each ``impl`` is a ``Writer``.

    The output path's suffix picks the writer: the longest claimed suffix wins, and of
    writers claiming the same suffix the first registered (built-ins first) wins;
    ``flipsketch plugins`` lists such clashes. Default: ``gif``.
    """


@hookspec
def register_recipe_steps(register: Register) -> None:
    """Register recipe step types (``type:`` in a recipe's ``steps``): each ``impl`` is a
    ``StepType`` whose fields are ``Field`` and whose ``run`` returns ``Clip``.

    Called when a recipe is validated or run. No default: a step always names its type.
    """


@hookspec
def register_interpolators(register: Register) -> None:
    """Register frame interpolators used by the recipe ``interpolate`` step: each ``impl`` is
    an ``Interpolator``. Default: ``flow`` (optical flow).
    """


@hookspec
def register_commands(cli: typer.Typer) -> None:
    """Add commands to ``flipsketch``: ``@cli.command()`` for a command, ``cli.add_typer(app,
    name="NAME")`` for a group of them; ``cli`` is a ``typer.Typer`` of the plugin's own whose
    commands join flipsketch's.

    Called once per run of the command line, before it parses the arguments (so ``flipsketch
    --help`` lists the commands): keep heavy imports (torch, the API) inside the command
    functions. A command name already taken, by flipsketch or by another plugin, leaves the
    plugin out whole with an error naming both, as does a hook that raises; ``flipsketch
    plugins`` lists it. Report failures the user can fix by raising
    ``flipsketch.errors.UsageError`` (one line, exit 2).
    """
