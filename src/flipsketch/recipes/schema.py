"""The recipe format: step types (plugins), their fields, parsed steps and recipes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flipsketch.errors import UsageError

# The types a step-type plugin sees live with the other plugin types (flipsketch.plugins);
# the recipe code imports them from here as well.
from flipsketch.plugins import (  # noqa: F401
    DEFAULT_FPS,
    STAGES,
    Clip,
    Field,
    StepError,
    StepType,
)

RECIPE_VERSION = 1
CACHE_DIR = ".flipsketch"  # inside OUTDIR: cached frames and the manifest of our outputs
# Sampler options naming plugin stages (inverter, aligner, composer), as in api.animate.
STAGE_OPTIONS = tuple(name for name, stage in STAGES.items() if stage.sampler)
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
