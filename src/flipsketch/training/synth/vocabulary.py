"""Words: the subjects, the motions and the caption grammar (``make_caption``), and the
sizes of each motion.
"""

from __future__ import annotations

import numpy as np

from flipsketch.training.deform import DEFORMATIONS

# subject id -> the noun its captions use
SUBJECTS: dict[str, str] = {
    "ball": "ball",
    "star": "star",
    "fish": "fish",
    "house": "house",
    "person": "stick figure",
    "flower": "flower",
    "tree": "tree",
    "heart": "heart",
    "cloud": "cloud",
    "bird": "bird",
    "car": "car",
    "cat": "cat",
    "sun": "sun",
    "boat": "boat",
}

# subject id -> (third person, participle) of how it travels; others "moves" / "moving"
LOCOMOTION: dict[str, tuple[str, str]] = {
    "ball": ("rolls", "rolling"),
    "fish": ("swims", "swimming"),
    "person": ("walks", "walking"),
    "bird": ("flies", "flying"),
    "car": ("drives", "driving"),
    "cat": ("walks", "walking"),
    "cloud": ("drifts", "drifting"),
    "boat": ("sails", "sailing"),
}

# motion id -> caption phrases (paraphrases of one another)
MOTIONS: dict[str, tuple[str, ...]] = {
    "move_right": (
        "moving to the right",
        "going right",
        "{verbing} to the right",
        "{verbs} right",
        "moves to the right",
        "heading right",
    ),
    "move_left": (
        "moving to the left",
        "going left",
        "{verbing} to the left",
        "{verbs} left",
        "moves to the left",
        "heading left",
    ),
    "move_up": (
        "moving up",
        "going upward",
        "rising up",
        "rises",
        "moves upward",
        "floating up",
    ),
    "move_down": (
        "moving down",
        "going downward",
        "falling down",
        "falls",
        "moves downward",
        "sinking down",
    ),
    "spin_cw": (
        "spinning clockwise",
        "rotating clockwise",
        "turns clockwise",
        "spins clockwise",
        "turning around clockwise",
    ),
    "spin_ccw": (
        "spinning counterclockwise",
        "rotating anticlockwise",
        "turns counterclockwise",
        "spins anticlockwise",
        "turning around counterclockwise",
    ),
    "grow": (
        "growing bigger",
        "getting larger",
        "grows",
        "growing in size",
        "becomes bigger",
        "expanding",
    ),
    "shrink": (
        "shrinking",
        "getting smaller",
        "shrinks",
        "becoming smaller",
        "shrinking in size",
        "contracting",
    ),
    "bounce": (
        "bouncing",
        "bouncing up and down",
        "bounces",
        "hopping up and down",
        "jumps up and down",
    ),
    "sway": (
        "swaying",
        "swaying side to side",
        "sways back and forth",
        "rocking from side to side",
        "tilting back and forth",
    ),
}

# Never produced for training; evaluation asks for them to test generalisation. Each
# translation direction appears once, and each pair's subject and motion are trained separately.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("fish", "move_left"),
    ("cat", "move_right"),
    ("cloud", "move_up"),
    ("bird", "move_down"),
    ("star", "spin_ccw"),
    ("heart", "grow"),
)

TRANSLATIONS = {"move_right": (1, 0), "move_left": (-1, 0), "move_up": (0, -1), "move_down": (0, 1)}

# Each directional motion and its mirror image: a paired animator draws both from one drawing.
OPPOSITES = {"move_right": "move_left", "move_left": "move_right", "move_up": "move_down",
             "move_down": "move_up", "spin_cw": "spin_ccw", "spin_ccw": "spin_cw",
             "grow": "shrink", "shrink": "grow"}

# Part motions (Live-Sketch's kind): the drawing stays where it is and its strokes move.
# "articulate" moves a named subject's own part about its joint; its phrases depend on the
# subject. The deformations (training.deform) apply to any drawing.
ARTICULATIONS: dict[str, tuple[str, ...]] = {
    "fish": ("wagging its tail", "flicking its tail", "swishing its tail", "wags its tail"),
    "bird": ("flapping its wings", "beating its wings", "flaps its wings", "flapping"),
    "person": ("waving", "waving its arm", "waves hello", "waving hello"),
    "cat": ("wagging its tail", "swishing its tail", "flicking its tail", "wags its tail"),
    "flower": ("nodding in the breeze", "nodding its head", "nods gently", "nodding"),
    "tree": ("rustling in the wind", "shaking its crown", "rustling", "rocking its crown"),
}
PART_MOTIONS = ("articulate", *DEFORMATIONS)

# Motion sizes, as fractions of the frame width, degrees and factors.
TRAVEL = (0.25, 0.45)
GENTLE_TRAVEL = (0.06, 0.15)  # Live-Sketch-like: the drawing stays roughly where it was
SPIN_DEGREES = (90.0, 180.0)
GROW_FACTOR = (1.5, 1.7)
BOUNCE_HEIGHT = (0.25, 0.35)
SWAY_DEGREES = (15.0, 25.0)
PEN_WIDTH = (1.0, 4.0)  # pixels at 128 px


# doodle kind -> the generic nouns its captions use
DOODLES: dict[str, tuple[str, ...]] = {
    "squiggle": ("squiggle", "line", "curve", "doodle", "drawing"),
    "scribble": ("scribble", "doodle", "drawing", "sketch"),
    "shape": ("shape", "outline", "doodle", "drawing"),
    "word": ("word", "letters", "drawing"),
    "parts": ("drawing", "doodle", "sketch", "picture"),
}

# what any drawing may be called, whatever it shows
GENERIC_NOUNS = ("drawing", "doodle", "sketch", "picture")


def make_caption(subject: str, motion: str, rng: np.random.Generator,
                 noun: str | None = None) -> str:
    """One random paraphrase following the caption grammar in the module docstring; ``noun``
    replaces the subject's own (a generic caption: its locomotion verbs go too)."""
    verbs, verbing = ("moves", "moving") if noun else LOCOMOTION.get(subject, ("moves", "moving"))
    phrases = (ARTICULATIONS[subject] if motion == "articulate"
               else DEFORMATIONS.get(motion) or MOTIONS[motion])
    phrase = phrases[rng.integers(len(phrases))]
    noun = noun or SUBJECTS[subject]
    determiner = ("an" if noun[0] in "aeiou" else "a", "the")[rng.integers(2)]
    phrase = phrase.format(verbs=verbs, verbing=verbing)
    return f"{determiner} {noun} {phrase}"
