"""Best-of-K: rank sampled animations by how well they keep the drawing.

Some seeds keep the drawing, some lose it; sampling K together and keeping the best J is the
cheapest quality lever there is. The authors' demo had such a filter, and it could drop every
sample; here ranking only orders: the caller writes the J best whatever their scores, and
reports every score.

Two scores, both of sketch fidelity:

- ``fidelity`` (default, no extra model): the motion-compensated stroke F-score of frames
  2..M against the drawing (``metrics.compensated_fscore``), so a sample is not punished for
  moving, only for changing the drawing;
- ``clip`` (``--rank-model``): the paper's sketch-to-video consistency, CLIP image-embedding
  similarity between the drawing and each frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from flipsketch.api import Animation, prepare_sketch
from flipsketch.evaluation.metrics import fidelity

Scorer = Callable[[Image.Image, Sequence[Animation]], list[float]]  # higher is better


@dataclass
class Ranked:
    animation: Animation
    score: float
    rank: int  # 1 = best


def fidelity_scores(sketch: Image.Image, animations: Sequence[Animation]) -> list[float]:
    """Motion-compensated stroke F-score of frames 2..M, each sample on its own."""
    if not animations:
        return []
    size = animations[0].frames.shape[-1]
    reference = prepare_sketch(sketch, size).numpy()  # (H, W), as the sampler saw it
    scores = []
    for animation in animations:
        later = fidelity(reference, animation.frames)["later_compensated"]
        scores.append(float(later if later is not None else 0.0))
    return scores


def clip_scorer(consistency) -> Scorer:
    """A ``Scorer`` from a loaded CLIP consistency model (``evaluation.clip_scores``).

    The drawing is framed as the sampler saw it (padded square, model resolution), because
    CLIP's processor centre-crops: a wide drawing would otherwise lose its ends.
    """

    def score(sketch: Image.Image, animations: Sequence[Animation]) -> list[float]:
        if not animations:
            return []
        reference = prepare_sketch(sketch, animations[0].frames.shape[-1]).numpy()
        return list(consistency.score_many(reference, [a.frames for a in animations]))

    return score


def rank(sketch: Image.Image, animations: Sequence[Animation],
         scorer: Scorer = fidelity_scores) -> list[Ranked]:
    """Every animation with its score, best first; ties keep the sampling order."""
    scores = scorer(sketch, animations)
    order = sorted(range(len(animations)), key=lambda k: (-scores[k], k))
    return [Ranked(animations[k], float(scores[k]), position)
            for position, k in enumerate(order, start=1)]

