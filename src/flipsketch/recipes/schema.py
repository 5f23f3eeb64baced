"""The recipe format: step types (plugins), their fields, parsed steps and recipes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flipsketch.errors import UsageError

if TYPE_CHECKING:
    from flipsketch.recipes.runner import StepContext

RECIPE_VERSION = 1
CACHE_DIR = ".flipsketch"  # inside OUTDIR: cached frames and the manifest of our outputs
DEFAULT_FPS = 10.0  # the paper's GIFs
STAGE_OPTIONS = ("inverter", "aligner", "composer")  # sampler options naming plugin stages
TOP_LEVEL_KEYS = ("version", "description", "model", "device", "dtype", "defaults", "steps")
STEP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def dotted(path: tuple) -> str:
    """('steps', 2, 'prompt') -> 'steps[2].prompt'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class RecipeError(UsageError):
    """A problem in a recipe, located as ``file:line: key.path: problem``."""


class StepError(Exception):
    """Raised by a step type's ``check`` about one of the step's keys (None: the whole step)."""
    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


# -- the format -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One key of a step type.

    ``type`` is ``str``, ``int``, ``float`` (ints accepted), ``bool``, ``list[str]`` or
    ``list[int]``. ``kind`` says how the value is resolved: ``file`` (a path relative to the
    recipe, hashed by content for the cache), ``output`` (a path inside OUTDIR), ``step`` (the
    name of an earlier step that makes frames), ``model`` (a hub id, or a folder relative to the
    recipe) or ``stage:NAME`` (an implementation registered for plugin stage NAME). ``check``
    returns what is wrong with a value of the right type, or None.
    """

    type: Any
    required: bool = False
    default: Any = None
    kind: str = "value"
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class StepType:
    """A kind of recipe step, registered with ``register_recipe_steps``.

    ``run(ctx, step)`` returns the frames it made, one ``Clip`` per sample, or None for a step
    that only writes files (one with ``output`` fields). A ``sampler`` step also takes every
    sampler option (the ``SamplerSettings`` fields and the inverter/aligner/composer names);
    its ``defaults`` override the recipe's defaults for this type. ``check(step)`` may reject
    combinations of keys by raising ``StepError``.
    """

    run: Callable[[StepContext, Step], list[Clip] | None]
    fields: dict[str, Field]
    description: str = ""
    sampler: bool = False
    defaults: dict[str, Any] = field(default_factory=dict)
    check: Callable[[Step], None] | None = None

    @property
    def makes_frames(self) -> bool:
        return not any(f.kind == "output" for f in self.fields.values())


@dataclass
class Clip:
    """Frames passed from step to step: (F, H, W) grey or (F, H, W, 3) RGB, float32 in [0, 1]
    with 1 = white, and the frame rate they are meant to play at."""

    frames: np.ndarray
    fps: float = DEFAULT_FPS


@dataclass
class Step:
    """One validated step: its own keys with defaults filled in and paths resolved."""
    name: str
    type: str
    step_type: StepType
    params: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)  # merged sampler options
    settings: Any = None  # flipsketch.api.SamplerSettings, for sampler steps
    stages: dict[str, str] = field(default_factory=dict)  # inverter/aligner/composer
    clips: int = 1  # how many clips it makes; 0 for a step that only writes files
    outputs: list[str] = field(default_factory=list)  # files it writes, relative to OUTDIR

    @property
    def inputs(self) -> list[str]:
        """Names of the earlier steps whose frames this one reads."""
        return [self.params[key] for key, spec in self.step_type.fields.items()
                if spec.kind == "step" and self.params.get(key) is not None]


@dataclass
class Recipe:
    """A validated recipe, ready to run."""
    path: Path
    display: str  # how messages name the file
    description: str
    model: str
    device: str | None
    dtype: str | None
    steps: list[Step]
