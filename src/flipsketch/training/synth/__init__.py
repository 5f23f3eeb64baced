"""Procedural sketch animations: the training data of the tiny model.

A tiny model trained on a CPU has to learn "prompt -> direction" from data alone, so every clip
here shows one hand-drawn-looking subject doing one large, unambiguous motion, and its caption
names exactly that subject and that motion.

Drawings are made of strokes: polylines in a unit box (x right, y down, the subject within
about [-1, 1]), turned hand-drawn by a smooth wobble, a slight misplacement, occasional
overshoot and gaps at the ends of closed loops, and a per-stroke pen width. A clip draws the
same strokes every frame (the wobble comes from a per-clip seed), moved by the motion, plus a
faint per-frame "line boil" as in real hand-drawn animation. The stick figure walks or waves,
the bird flaps and the fish wags its tail while they move. Frames are drawn with Pillow at twice
the size and halved, which antialiases the ink.

Caption grammar (``make_caption``)::

    caption := DETERMINER " " NOUN " " PHRASE
    DETERMINER := "a" | "an" | "the"                # "an" before a vowel
    NOUN := SUBJECTS[subject]                       # e.g. "fish", "stick figure"
    PHRASE := one of MOTIONS[motion], with "{verbs}" / "{verbing}" replaced by
              LOCOMOTION[subject] (default "moves" / "moving")

e.g. "a fish moving to the right", "the fish swims right", "a car driving to the left". Every
caption names one subject and one motion and nothing else.

A user's drawing is rarely one of the named subjects, and composition can only carry an
appearance the model's features can represent; so a training animator can also draw *doodles*
(``doodle_share``): random smooth curves, scribbles, closed shapes, words in a stick alphabet
and compositions of several such parts, captioned with a generic noun (NOUN := one of
``DOODLES[kind]``, e.g. "a doodle spinning clockwise", "the word moving to the left"). With
``generic_share`` a named subject's caption also uses a generic noun ("a drawing moving up").

One module per concept: ``vocabulary`` (subjects, motions, captions, motion sizes),
``subjects`` and ``doodles`` (what is drawn, as strokes), ``style`` (the hand-drawn pen and
the rasteriser), ``motions`` (where the drawing goes), ``clips`` (``SketchAnimator``),
``dataset`` (``write_dataset``). The names below are the ones used outside this package.
"""

from __future__ import annotations

from flipsketch.training.synth.clips import (
    SketchAnimator,
    SyntheticClip,
    part_motion_for,
)
from flipsketch.training.synth.dataset import (
    ENCODERS,
    FORMATS,
    FPS,
    write_dataset,
)
from flipsketch.training.synth.doodles import (
    DOODLE_DRAWERS,
    LETTER_STROKES,
)
from flipsketch.training.synth.subjects import (
    DRAWERS,
    Drawer,
    Stroke,
)
from flipsketch.training.synth.vocabulary import (
    ARTICULATIONS,
    BOUNCE_HEIGHT,
    DOODLES,
    GENERIC_NOUNS,
    GENTLE_TRAVEL,
    GROW_FACTOR,
    HELD_OUT_PAIRS,
    LOCOMOTION,
    MOTIONS,
    OPPOSITES,
    PART_MOTIONS,
    PEN_WIDTH,
    SPIN_DEGREES,
    SUBJECTS,
    SWAY_DEGREES,
    TRANSLATIONS,
    TRAVEL,
    make_caption,
)

__all__ = [
    "ARTICULATIONS",
    "BOUNCE_HEIGHT",
    "DOODLES",
    "DOODLE_DRAWERS",
    "DRAWERS",
    "Drawer",
    "ENCODERS",
    "FORMATS",
    "FPS",
    "GENERIC_NOUNS",
    "GENTLE_TRAVEL",
    "GROW_FACTOR",
    "HELD_OUT_PAIRS",
    "LETTER_STROKES",
    "LOCOMOTION",
    "MOTIONS",
    "OPPOSITES",
    "PART_MOTIONS",
    "PEN_WIDTH",
    "SPIN_DEGREES",
    "SUBJECTS",
    "SWAY_DEGREES",
    "SketchAnimator",
    "Stroke",
    "SyntheticClip",
    "TRANSLATIONS",
    "TRAVEL",
    "make_caption",
    "part_motion_for",
    "write_dataset",
]
