"""The example drawings shipped inside the package, named ``example:NAME`` wherever a drawing's
path is read.

A newcomer's first command has to work before they have a drawing of their own, so five real
hand-drawn sketches (MIT, the FlipSketch authors' demo; licence in ``examples/README.md``) ship
as package data, and ``flipsketch animate example:fish "..."`` finds them wherever flipsketch
is installed. No torch, no image decoding here: only names and paths.
"""

from __future__ import annotations

from pathlib import Path

from flipsketch.errors import UsageError

# The package's examples/ folder (package data, see pyproject.toml).
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
PREFIX = "example:"


def example_names() -> list[str]:
    """The names ``example:NAME`` accepts, sorted: the stems of the shipped PNGs."""
    return sorted(path.stem for path in EXAMPLES_DIR.glob("*.png"))


def listed_examples() -> str:
    """The examples as a message lists them: ``example:camel, example:cat, ...``."""
    return ", ".join(PREFIX + name for name in example_names())


def is_example(value: str | Path) -> bool:
    """Whether a drawing argument names a shipped example rather than a file."""
    return str(value).startswith(PREFIX)


def resolve_sketch(value: str | Path) -> Path:
    """A drawing argument as a file: ``example:fish`` -> the shipped ``fish.png``, any other
    value -> itself as a path (checked later, by ``load_sketch``)."""
    if not is_example(value):
        return Path(value)
    name = str(value)[len(PREFIX):].strip()
    if name.lower().endswith(".png"):  # example:fish.png names the same drawing
        name = name[:-4]
    path = EXAMPLES_DIR / f"{name}.png"
    if not name or "/" in name or "\\" in name or not path.is_file():
        raise UsageError(f"there is no example drawing '{name}'; the examples are "
                         f"{listed_examples()}")
    return path
