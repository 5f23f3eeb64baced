"""Evaluation runs: sample with the Python API, seeded, and score with ``metrics``.

Each run returns plain dicts (what the model card and ``flipsketch eval`` report):
the text-only motion bar, caption sensitivity (does the denoiser hear motion words), the
sketch bar (fidelity and motion from a drawing) and the paper's ablation table. The sketch runs
also take the paper's CLIP scorers (``clip_scores``), loaded once by the caller; without them
those two scores are None. ``progress(done, total)`` is called after every sample.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from flipsketch.errors import UsageError
from flipsketch.evaluation.metrics import (
    MIN_TRAVEL,
    direction_of,
    fidelity,
    judge,
    judge_measured,
    motion_of,
    stroke_recall,
    translation,
)
from flipsketch.evaluation.tables import paper_columns

if TYPE_CHECKING:
    from flipsketch.api import SamplerSettings
    from flipsketch.evaluation.clip_scores import ClipConsistency, XClipAlignment
    from flipsketch.sampler.pipeline import FlipSketchPipeline

Progress = Callable[[int, int], None]

# The motions the text-only bar asks for by default: each has an unambiguous measurement.
TEXT_MOTIONS = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink",
                "spin_cw", "spin_ccw")


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _check_names(kind: str, names: Sequence[str], known: Iterable[str]) -> None:
    known = list(known)
    for name in names:
        if name not in known:
            raise UsageError(f"unknown {kind} '{name}'; choose from: {', '.join(known)}")


def evaluate_text_motion(pipe: FlipSketchPipeline, seeds: Sequence[int] = (0, 1),
                         subjects: Sequence[str] | None = None,
                         motions: Sequence[str] = TEXT_MOTIONS, include_held_out: bool = True,
                         settings: SamplerSettings | None = None,
                         progress: Progress | None = None) -> dict:
    """Text-only generation for every subject x motion, judged by ``judge``.

    Captions follow the synthetic data's grammar (one paraphrase per subject, motion and
    seed), so the bar asks the model exactly what its training taught it. Pairs listed in
    ``flipsketch.training.synth.HELD_OUT_PAIRS`` were never trained on; they are reported apart, as
    the test of whether subject and motion were learnt separately.
    """
    from flipsketch.api import SamplerSettings, animate
    from flipsketch.training.synth import HELD_OUT_PAIRS, MOTIONS, SUBJECTS, make_caption

    subjects = list(SUBJECTS) if subjects is None else list(subjects)
    _check_names("subject", subjects, SUBJECTS)
    _check_names("motion", motions, MOTIONS)
    settings = settings or SamplerSettings()
    held_out = set(HELD_OUT_PAIRS)
    pairs = [(s, m) for s in subjects for m in motions
             if include_held_out or (s, m) not in held_out]
    total, cases = len(pairs) * len(seeds), []
    for subject, motion in pairs:
        for seed in seeds:
            rng = np.random.default_rng([seed, list(SUBJECTS).index(subject),
                                         list(MOTIONS).index(motion)])
            prompt = make_caption(subject, motion, rng)
            [clip] = animate(pipe, prompt, None, replace(settings, seed=seed, samples=1))
            correct, measured = judge_measured(motion, clip.frames)
            cases.append(dict(subject=subject, motion=motion, seed=seed, prompt=prompt,
                              held_out=(subject, motion) in held_out, correct=correct,
                              **measured))
            if progress is not None:
                progress(len(cases), total)

    def accuracy(group: list[dict]) -> float | None:
        return _mean([float(case["correct"]) for case in group])

    return {
        "seeds": list(seeds),
        "steps": settings.num_inference_steps,
        "accuracy": accuracy(cases),
        "trained_accuracy": accuracy([c for c in cases if not c["held_out"]]),
        "held_out_accuracy": accuracy([c for c in cases if c["held_out"]]),
        "by_motion": {m: accuracy([c for c in cases if c["motion"] == m]) for m in motions},
        "cases": cases,
    }


# Each judged motion and the one a caption can name instead to say the opposite.
OPPOSITE_MOTIONS = {"move_left": "move_right", "move_right": "move_left", "move_up": "move_down",
                    "move_down": "move_up", "grow": "shrink", "shrink": "grow",
                    "spin_cw": "spin_ccw", "spin_ccw": "spin_cw"}


def caption_sensitivity(pipe: FlipSketchPipeline, timesteps: Sequence[int] = (950, 800, 600),
                        motions: Sequence[str] = TEXT_MOTIONS, clips_per_motion: int = 6,
                        repeats: int = 2, seed: int = 0) -> dict:
    """Does the model listen to the motion words? A check that needs no sampling.

    Synthetic clips (held-out drawings, each motion in ``motions``) are noised to each timestep
    and denoised three times: with their true caption, with the caption naming the opposite
    motion (same subject, same noise), and with the empty prompt. ``gap`` is
    loss(opposite) / loss(true) - 1: zero means the motion words change nothing, which is what
    a model that picks its direction from the noise shows; the empty prompt's gap says how
    much the caption helps at all (mostly the subject). The loss is the training loss
    (``training.noise``), so it is the number training drives down.
    """
    import torch

    from flipsketch.sampler.latents import encode_frames
    from flipsketch.training.noise import denoising_loss, noised_batch
    from flipsketch.training.synth import SUBJECTS, SketchAnimator, make_caption

    _check_names("motion", motions, OPPOSITE_MOTIONS)
    # Training draws clip i from default_rng([run seed, i]); a stream seeded 10**6 + seed
    # gives drawings no training run has seen.
    stream = 10**6 + seed
    animator = SketchAnimator(size=pipe.model_resolution, seed=stream)
    rng = np.random.default_rng(stream)
    subjects = list(SUBJECTS)
    clips, true, opposite = [], [], []
    for motion in motions:
        for _ in range(clips_per_motion):
            subject = subjects[len(clips) % len(subjects)]
            clip = animator.render(subject, motion, np.random.default_rng([stream, len(clips)]))
            clips.append(clip.frames)
            true.append(clip.caption)
            opposite.append(make_caption(subject, OPPOSITE_MOTIONS[motion], rng))
    # Everything stays on the model's device (the scheduler moves its own tables there); the
    # noise is drawn on the host, so a seed gives the same noise on every device, and the
    # losses come back once per timestep.
    device = pipe.unet.device
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x0 = torch.stack([encode_frames(pipe.vae, torch.from_numpy(f)).float().transpose(0, 1)
                          for f in clips]).to(device)  # (n, c, F, h, w)
        embeds = {"true": pipe.encode_prompt(true), "opposite": pipe.encode_prompt(opposite),
                  "empty": pipe.encode_prompt([""] * len(clips))}
        rows = []
        for t in timesteps:
            losses = {name: torch.zeros(len(clips), device=device) for name in embeds}  # (n,)
            for _ in range(repeats):
                noise = torch.randn(x0.shape, generator=generator).to(device)
                tt = torch.full((len(clips),), int(t), device=device)
                noisy, target = noised_batch(pipe.scheduler, x0, noise, tt)
                for name, embed in embeds.items():
                    pred = pipe.predict(noisy, tt, embed)
                    losses[name] += denoising_loss(pred, target) / repeats
            losses = {name: loss.cpu() for name, loss in losses.items()}
            per = clips_per_motion
            rows.append({"timestep": int(t),
                         **{f"loss_{k}": float(v.mean()) for k, v in losses.items()},
                         "gap": _gap(losses, "opposite"), "empty_gap": _gap(losses, "empty"),
                         "gap_by_motion": {
                             m: _gap(losses, "opposite", slice(i * per, (i + 1) * per))
                             for i, m in enumerate(motions)}})
    return {"clips": len(clips), "repeats": repeats, "timesteps": rows}


def _gap(losses: dict, name: str, rows: slice = slice(None)) -> float:
    """Relative loss rise of caption ``name`` over the true caption, on clips ``rows``."""
    return float(losses[name][rows].mean() / losses["true"][rows].mean() - 1)


def evaluate_sketch(pipe: FlipSketchPipeline, sketches: Sequence[tuple[str, np.ndarray]],
                    prompts: Sequence[str], seeds: Sequence[int] = (0,),
                    settings: SamplerSettings | None = None,
                    progress: Progress | None = None,
                    consistency: ClipConsistency | None = None,
                    alignment: XClipAlignment | None = None,
                    inverter: str | None = None) -> dict:
    """Animate every sketch (name, (H, W) grey) with every prompt and seed; score each clip.

    Per clip: fidelity of frame 1 and of the later frames to the sketch, how far the ink
    travels (px at the model's resolution) and, for prompts that name a translation in the
    caption grammar (``motion_of``), whether it went that way. With the scorers, also the
    paper's sketch-to-video consistency (against the sketch as the sampler saw it: square,
    grey, at the model's resolution) and text-to-video alignment (against the prompt with
    its subject filled in). ``{subject}`` in a prompt is replaced by the sketch's name, so one
    prompt list serves a folder of different drawings. The summary averages over clips;
    ``seconds`` is the sampling time alone, without scoring. ``inverter`` names the inverter
    (None: the default), as ``animate``'s.
    """
    from flipsketch.api import SamplerSettings, animate, prepare_sketch
    from flipsketch.frames.images import array_to_images
    from flipsketch.training.synth import TRANSLATIONS

    settings = settings or SamplerSettings()
    total, cases, seconds = len(sketches) * len(prompts) * len(seeds), [], 0.0
    for name, sketch in sketches:
        image = array_to_images(np.asarray(sketch)[None])[0]
        reference = prepare_sketch(image, pipe.model_resolution).numpy()  # (H, W) as sampled
        clips, first = [], len(cases)  # this sketch's clips, scored together below
        for template in prompts:
            prompt = template.replace("{subject}", name)
            motion = motion_of(prompt)
            for seed in seeds:
                start = time.perf_counter()
                [clip] = animate(pipe, prompt, image, replace(settings, seed=seed, samples=1),
                                 inverter=inverter)
                seconds += time.perf_counter() - start
                dx, dy = translation(clip.frames)
                scores = fidelity(reference, clip.frames)
                clips.append(clip.frames)
                cases.append(dict(
                    sketch=name, prompt=prompt, seed=seed, motion=motion,
                    s2v_consistency=None, t2v_alignment=None,
                    fidelity_first=scores["first"], fidelity_later=scores["later_mean"],
                    fidelity_compensated=scores["later_compensated"],
                    recall_first=stroke_recall(reference, clip.frames[0]),
                    motion_px=math.hypot(dx, dy), dx=dx, dy=dy,
                    direction=direction_of(dx, dy, MIN_TRAVEL * clip.frames.shape[-1]),
                    correct=judge(motion, clip.frames) if motion in TRANSLATIONS else None,
                ))
                if progress is not None:
                    progress(len(cases), total)
        # One batched pass per scorer and sketch: the sketch is embedded once, not per clip.
        ours = cases[first:]
        if consistency is not None:
            for case, score in zip(ours, consistency.score_many(reference, clips), strict=True):
                case["s2v_consistency"] = score
        if alignment is not None:
            scores = alignment.score_many([c["prompt"] for c in ours], clips)
            for case, score in zip(ours, scores, strict=True):
                case["t2v_alignment"] = score
    judged = [float(c["correct"]) for c in cases if c["correct"] is not None]

    def measured(key: str) -> float | None:
        return _mean([c[key] for c in cases if c[key] is not None])

    return {
        "s2v_consistency": measured("s2v_consistency"),
        "t2v_alignment": measured("t2v_alignment"),
        "fidelity_first": _mean([c["fidelity_first"] for c in cases]),
        "fidelity_later": _mean([c["fidelity_later"] for c in cases]),
        "fidelity_compensated": _mean([c["fidelity_compensated"] for c in cases]),
        "recall_first": _mean([c["recall_first"] for c in cases]),
        "motion_px": _mean([c["motion_px"] for c in cases]),
        "direction_accuracy": _mean(judged),
        "seconds": seconds,
        "cases": cases,
    }


class AblationConfig(NamedTuple):
    """One row of the ablation: our name, its sampler settings, and the row of the paper's
    Table 1 it reproduces (a key of ``tables.PAPER_TABLE_1``; None if the paper has none)."""

    name: str
    settings: SamplerSettings
    paper_row: str | None


TOOLKIT_LABEL = "toolkit: "  # the prefix of the rows sampled with the toolkit's sampler


def ablation_configs(settings: SamplerSettings) -> list[AblationConfig]:
    """The rows of the paper's Table 1 ablation, each a variant of ``settings``.

    The rows beside the paper's numbers use the paper's sampler (``paper=True``: frame 1 free
    after the method's windows, as the authors' code), so that a score counts frame 1 as the
    generated frame it was in the paper. The same rows follow with the toolkit's sampler
    (frame 1 kept on the drawing), labelled ``toolkit: ...`` and with no paper numbers.
    """
    def variants(base: SamplerSettings) -> list[tuple[str, SamplerSettings, str]]:
        return [
            (f"full (lambda {base.lambda_:g})", base, "Ours"),
            ("lambda 0", replace(base, lambda_=0.0), "Ours @ lambda = 0"),
            ("lambda 1", replace(base, lambda_=1.0), "Ours @ lambda = 1"),
            ("w/o frame alignment", replace(base, align=False), "Ours w/o frame align"),
            ("w/o C^T & C^S", replace(base, compose="none"), "Ours w/o C^T & C^S"),
        ]

    paper = replace(settings, paper=True)
    toolkit = replace(settings, paper=False)
    return [
        *(AblationConfig(name, row, paper_row) for name, row, paper_row in variants(paper)),
        # Sec. 4.1 / Fig. 8: the inverted sketch noise for frame 1 and nothing else.
        AblationConfig("naive baseline",
                       replace(paper, align=False, compose="none", tau1=0, tau2=-1,
                               keep_first_frame=False), None),
        *(AblationConfig(TOOLKIT_LABEL + name, row, None) for name, row, _ in variants(toolkit)),
    ]


def run_ablation(pipe: FlipSketchPipeline, sketches: Sequence[tuple[str, np.ndarray]],
                 prompts: Sequence[str], seeds: Sequence[int] = (0,),
                 settings: SamplerSettings | None = None,
                 progress: Progress | None = None,
                 consistency: ClipConsistency | None = None,
                 alignment: XClipAlignment | None = None,
                 inverter: str | None = None) -> list[dict]:
    """``evaluate_sketch`` once per configuration of ``ablation_configs``: one row each.

    Each row carries the paper's Table 1 numbers for its configuration
    (``paper_s2v_consistency``, ``paper_t2v_alignment``) beside the measured ones. Without
    the CLIP scorers, fidelity_later is the offline analogue of sketch-to-video consistency
    and direction_accuracy of text-to-video alignment.
    """
    from flipsketch.api import SamplerSettings

    configs = ablation_configs(settings or SamplerSettings())
    per_config = len(sketches) * len(prompts) * len(seeds)

    rows = []
    for index, config in enumerate(configs):
        def step(done: int, _total: int, offset: int = index * per_config) -> None:
            if progress is not None:
                progress(offset + done, per_config * len(configs))

        result = evaluate_sketch(pipe, sketches, prompts, seeds, config.settings, progress=step,
                                 consistency=consistency, alignment=alignment,
                                 inverter=inverter)
        rows.append({"config": config.name, "paper_row": config.paper_row,
                     "sampler": "paper" if config.settings.paper else "toolkit",
                     **paper_columns(config.paper_row),
                     **{k: v for k, v in result.items() if k != "cases"}})
    return rows
