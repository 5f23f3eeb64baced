"""``flipsketch eval``: offline scores for animations, models and the ablation table.

    flipsketch eval fidelity SKETCH ANIMATION        score an existing animation
    flipsketch eval sketch SKETCH_DIR                 the sketch bar: fidelity and motion
    flipsketch eval motion                            the text-only bar: does it move as told
    flipsketch eval captions                          does the model listen to motion words
    flipsketch eval ablate SKETCH_DIR PROMPTS_FILE    the paper's Table 1

``fidelity``, ``sketch`` and ``ablate`` also compute the paper's CLIP scores when given the
models: ``--clip`` (sketch-to-video consistency) and ``--xclip`` (text-to-video alignment), hub
ids or local folders (docs/evaluation.md). Every input is checked before the model loads, and
``--csv`` is written atomically, so bad input costs nothing and an interrupted run leaves no
half-written file. Tables and progress go to stderr; ``--json`` prints the full result (every
sample) on stdout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flipsketch.api import SamplerSettings
from flipsketch.cli.animate import AllowPickle
from flipsketch.cli.app import app, console, stdout
from flipsketch.cli.options import annotated
from flipsketch.errors import UsageError
from flipsketch.evaluation import metrics, runs
from flipsketch.evaluation.inputs import (
    DEFAULT_PROMPTS,
    as_arrays,
    eval_settings,
    read_prompts,
    read_sketches,
)
from flipsketch.evaluation.tables import PAPER_TABLE_1, write_csv
from flipsketch.files import check_writable
from flipsketch.models.presets import default_model

if TYPE_CHECKING:
    from flipsketch.evaluation.clip_scores import ClipConsistency, XClipAlignment

eval_app = typer.Typer(name="eval", no_args_is_help=True,
                       help="Offline evaluation: stroke fidelity, motion, the ablation table.")
app.add_typer(eval_app, name="eval")

# The model and the sampler's defaults are animate's: the default model (`flipsketch models
# default`), and SamplerSettings' steps and frames.
SAMPLER = SamplerSettings()
ModelOpt = Annotated[str | None, typer.Option(
    help="Preset (tiny, ...), local folder or hub id. Default: the default model "
         "('flipsketch models').", callback=lambda name: name or default_model())]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or mps.")]
SeedsOpt = Annotated[str, typer.Option(help="Comma-separated seeds; one sample per seed.")]
StepsOpt = Annotated[int, typer.Option(help="DDIM steps T.")]
FramesOpt = Annotated[int, typer.Option(help="Frames M per sample.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the full result on stdout.")]
Paper = annotated("paper")
Inverter = annotated("inverter")
SketchDir = Annotated[Path, typer.Argument(
    help="Folder of drawings (any image Pillow opens); each file's name fills {subject}.")]
ClipOpt = Annotated[str | None, typer.Option(
    "--clip", metavar="ID_OR_PATH",
    help="CLIP model for the paper's sketch-to-video consistency, e.g. "
         "openai/clip-vit-base-patch32. Default: not measured.")]
XClipOpt = Annotated[str | None, typer.Option(
    "--xclip", metavar="ID_OR_PATH",
    help="X-CLIP model for the paper's text-to-video alignment, e.g. "
         "microsoft/xclip-base-patch32. Default: not measured.")]

# -- inputs ----------------------------------------------------------------------------------

def parse_ints(text: str, option: str = "--seeds") -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise UsageError(f"{option} must be comma-separated integers like 0,1, not '{text}'")
    return seeds


def parse_names(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


# -- running ---------------------------------------------------------------------------------

def load(model: str, device: str | None, allow_pickle: bool = False):
    from flipsketch.api import load_pipeline

    with console.status(f"loading model '{escape(model)}'"):
        return load_pipeline(model, device=device, allow_pickle=allow_pickle)


@contextmanager
def progress_bar(what: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich bar on stderr, and the ``progress(done, total)`` callback that moves it."""
    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=not console.is_terminal) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def check_inverter(name: str | None) -> None:
    """Refuse an inverter no plugin registers, before anything loads."""
    from flipsketch.plugins import get_manager

    get_manager().get("inverter", name)


def check_scorers(clip: str | None, xclip: str | None) -> None:
    """Refuse a --clip/--xclip that names no folder and no hub id, before anything loads."""
    from flipsketch.evaluation.clip_scores import check_source

    for option, name in (("--clip", clip), ("--xclip", xclip)):
        if name is not None:
            check_source(name, option)


def load_scorers(clip: str | None, xclip: str | None, device: str | None,
                 allow_pickle: bool) -> tuple[ClipConsistency | None, XClipAlignment | None]:
    """The paper's scorers that were asked for, each loaded once for the whole run."""
    from flipsketch.evaluation.clip_scores import load_clip_consistency, load_xclip_alignment

    consistency = alignment = None
    if clip is not None:
        with console.status(f"loading CLIP '{escape(clip)}'"):
            consistency = load_clip_consistency(clip, device, allow_pickle)
    if xclip is not None:
        with console.status(f"loading X-CLIP '{escape(xclip)}'"):
            alignment = load_xclip_alignment(xclip, device, allow_pickle)
    return consistency, alignment


def fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def emit_json(result) -> None:
    stdout.print_json(json.dumps(result))


# -- commands --------------------------------------------------------------------------------

@eval_app.command("fidelity")
def fidelity_command(
    sketch: Annotated[Path, typer.Argument(help="The input drawing.")],
    animation: Annotated[Path, typer.Argument(
        help="GIF, MP4, WebP or APNG file, or a folder of PNG frames.")],
    size: Annotated[int, typer.Option(
        help="Pixels both are compared at; the 2 px tolerance and the motion are in these "
             "pixels, so compare scores at one size only.")] = 256,
    prompt: Annotated[str | None, typer.Option(
        help="What the animation should show; needed by --xclip.")] = None,
    clip: ClipOpt = None,
    xclip: XClipOpt = None,
    allow_pickle: AllowPickle = False,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Score an existing animation against its sketch: stroke F-score and ink motion, and
    with --clip/--xclip the paper's sketch-to-video consistency and text-to-video alignment."""
    from flipsketch.frames.images import images_to_array, load_sketch, to_grey_square
    from flipsketch.training.data import read_frames

    if size < 8:
        raise UsageError("--size must be at least 8 pixels")
    if xclip is not None and not (prompt and prompt.strip()):
        raise UsageError("--xclip scores the animation against a text; pass --prompt TEXT")
    check_scorers(clip, xclip)
    drawing = load_sketch(sketch)
    if not animation.exists():
        raise UsageError(f"animation '{animation}' does not exist; check the path")
    try:
        images = read_frames(animation)
    except Exception as exc:  # read_frames words every failure as one line
        raise UsageError(f"animation '{animation}' {exc}; pass a GIF/MP4/WebP/APNG file or a "
                         f"folder of PNG frames") from None
    if not images:
        raise UsageError(f"animation '{animation}' has no frames; pass a folder of PNG frames "
                         f"or an animation file")
    reference = images_to_array([to_grey_square(drawing, size)])[0]  # (H, W)
    frames = images_to_array([to_grey_square(image, size) for image in images])  # (F, H, W)
    scores = metrics.fidelity(reference, frames)
    dx, dy = metrics.translation(frames)
    consistency, alignment = load_scorers(clip, xclip, device, allow_pickle)
    result = {
        "sketch": str(sketch), "animation": str(animation), "size": size, "prompt": prompt,
        "s2v_consistency": consistency.score(reference, frames) if consistency else None,
        "t2v_alignment": alignment.score(prompt, frames) if alignment else None,
        "frames": len(frames), "fidelity_first": scores["first"],
        "fidelity_later": scores["later_mean"],
        "fidelity_compensated": scores["later_compensated"],
        "per_frame": [metrics.stroke_fscore(reference, frame) for frame in frames],
        "dx": dx, "dy": dy,
        "direction": metrics.direction_of(dx, dy, metrics.MIN_TRAVEL * size),
    }
    if json_output:
        emit_json(result)
    console.print(f"fidelity: frame 1 {fmt(result['fidelity_first'])}, later frames "
                  f"{fmt(result['fidelity_later'])} (motion-compensated "
                  f"{fmt(result['fidelity_compensated'])}); ink moved ({dx:+.1f}, {dy:+.1f}) px "
                  f"at {size} px -> {result['direction'] or 'no clear direction'}",
                  highlight=False, soft_wrap=True)
    if consistency or alignment:
        console.print(f"paper's scores: sketch-to-video consistency "
                      f"{fmt(result['s2v_consistency'])} (CLIP), text-to-video alignment "
                      f"{fmt(result['t2v_alignment'])} (X-CLIP)", highlight=False, soft_wrap=True)


@eval_app.command("sketch")
def sketch_command(
    sketch_dir: SketchDir,
    prompts: Annotated[Path | None, typer.Option(
        help="Text file, one prompt per line; {subject} becomes the sketch's name. "
             "Default: the four translations.")] = None,
    model: ModelOpt = None,
    seeds: SeedsOpt = "0,1",
    steps: StepsOpt = SAMPLER.num_inference_steps,
    frames: FramesOpt = SAMPLER.num_frames,
    paper: Paper = False,
    inverter: Inverter = None,
    clip: ClipOpt = None,
    xclip: XClipOpt = None,
    allow_pickle: AllowPickle = False,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The sketch bar: fidelity to each drawing, and motion in the prompt's direction.

    The toolkit's sampler by default, as ``animate``; --paper samples as the paper's Table 1
    was, which is what its CLIP scores (--clip, --xclip) compare with."""
    seed_list = parse_ints(seeds)
    prompt_list = read_prompts(prompts) if prompts is not None else list(DEFAULT_PROMPTS)
    settings = eval_settings(steps, frames, paper)
    drawings = read_sketches(sketch_dir)
    check_scorers(clip, xclip)
    check_inverter(inverter)
    consistency, alignment = load_scorers(clip, xclip, device, allow_pickle)
    pipe = load(model, device, allow_pickle)
    sketches = as_arrays(drawings, pipe.model_resolution)
    with progress_bar("sampling") as progress:
        result = runs.evaluate_sketch(pipe, sketches, prompt_list, seed_list, settings,
                                      progress=progress, consistency=consistency,
                                      alignment=alignment, inverter=inverter)
    if json_output:
        emit_json(result)
    sampler = "the paper's sampler" if paper else "the toolkit's sampler, frame 1 kept"
    title = f"({model}, {steps} steps, seeds {seeds}, {sampler}" \
            f"{f', inverter {inverter}' if inverter else ''})"
    table = Table(title=escape(f"sketch bar {title}"))
    for column in ("sketch", "prompt", "seed", "fidelity 1st", "recall 1st (1 px)",
                   "fidelity later", "compensated", "motion px", "direction"):
        table.add_column(column)
    for case in result["cases"]:
        mark = {True: " (as asked)", False: " (wrong)", None: ""}[case["correct"]]
        verdict = f"{case['direction'] or 'none'}{mark}"
        table.add_row(escape(case["sketch"]), escape(case["prompt"]), str(case["seed"]),
                      fmt(case["fidelity_first"]), fmt(case["recall_first"]),
                      fmt(case["fidelity_later"]), fmt(case["fidelity_compensated"]),
                      fmt(case["motion_px"], ".1f"), verdict)
    table.add_row("mean", "", "", fmt(result["fidelity_first"]), fmt(result["recall_first"]),
                  fmt(result["fidelity_later"]),
                  fmt(result["fidelity_compensated"]), fmt(result["motion_px"], ".1f"),
                  fmt(result["direction_accuracy"], ".0%"),
                  style="bold")
    console.print(table)
    if consistency is not None or alignment is not None:
        console.print(paper_scores_table(result, f"the paper's scores {title}"))
        if not paper:
            console.print("frame 1 is the drawing with the toolkit's sampler; --paper scores "
                          "as the paper's Table 1 (frame 1 generated)", highlight=False)


@eval_app.command("motion")
def motion_command(
    model: ModelOpt = None,
    seeds: SeedsOpt = "0,1",
    steps: StepsOpt = SAMPLER.num_inference_steps,
    frames: FramesOpt = SAMPLER.num_frames,
    subjects: Annotated[str | None, typer.Option(
        help="Comma-separated synth subjects. Default: all.")] = None,
    motions: Annotated[str, typer.Option(help="Comma-separated synth motions.")
    ] = ",".join(runs.TEXT_MOTIONS),
    held_out: Annotated[bool, typer.Option(
        "--held-out/--no-held-out",
        help="Include the subject-motion pairs never seen in training.")] = True,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The text-only bar: does the model move each subject as the caption says?"""
    seed_list = parse_ints(seeds)
    settings = eval_settings(steps, frames)
    pipe = load(model, device)
    with progress_bar("sampling") as progress:
        result = runs.evaluate_text_motion(
            pipe, seed_list, parse_names(subjects), parse_names(motions) or [], held_out,
            settings, progress=progress)
    if json_output:
        emit_json(result)
    table = Table(title=escape(f"text-only motion accuracy ({model}, {steps} steps, "
                               f"seeds {seeds})"))
    table.add_column("motion")
    table.add_column("accuracy", justify="right")
    for motion, accuracy in result["by_motion"].items():
        table.add_row(motion, fmt(accuracy, ".0%"))
    for label, key in (("trained pairs", "trained_accuracy"),
                       ("held-out pairs", "held_out_accuracy"), ("all", "accuracy")):
        table.add_row(label, fmt(result[key], ".0%"), style="bold")
    console.print(table)


@eval_app.command("captions")
def captions_command(
    model: ModelOpt = None,
    timesteps: Annotated[str, typer.Option(
        help="Comma-separated training timesteps to test at (high = noisy).")] = "950,800,600",
    motions: Annotated[str, typer.Option(help="Comma-separated synth motions.")
    ] = ",".join(runs.TEXT_MOTIONS),
    clips: Annotated[int, typer.Option(min=1, help="Synthetic clips per motion.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the clips and the noise.")] = 0,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Does the model listen to the motion words? Loss with the opposite motion's caption."""
    steps = parse_ints(timesteps, "--timesteps")
    if min(steps) < 0:
        raise UsageError(f"--timesteps must be 0 or more, not '{timesteps}'")
    motion_list = parse_names(motions) or []
    unknown = [m for m in motion_list if m not in runs.OPPOSITE_MOTIONS]
    if unknown or not motion_list:
        raise UsageError(f"--motions takes some of {', '.join(runs.OPPOSITE_MOTIONS)}, "
                         f"not '{motions}'")
    pipe = load(model, device)
    limit = pipe.scheduler.config.num_train_timesteps
    if not all(0 <= t < limit for t in steps):
        raise UsageError(f"timesteps must lie in 0..{limit - 1}; pass e.g. --timesteps 950,600")
    with console.status("denoising synthetic clips"):
        result = runs.caption_sensitivity(pipe, steps, motion_list, clips, seed=seed)
    if json_output:
        emit_json(result)
    table = Table(title=escape(f"caption sensitivity ({model}, {result['clips']} clips)"))
    for column in ("timestep", "loss, true caption", "opposite motion", "empty prompt"):
        table.add_column(column, justify="right")
    for row in result["timesteps"]:
        table.add_row(str(row["timestep"]), f"{row['loss_true']:.4f}",
                      f"{row['loss_opposite']:.4f} ({row['gap']:+.1%})",
                      f"{row['loss_empty']:.4f} ({row['empty_gap']:+.1%})")
    console.print(table)
    by_motion = Table(title="loss rise with the opposite motion's caption, by motion")
    by_motion.add_column("timestep", justify="right")
    for motion in motion_list:
        by_motion.add_column(motion.removeprefix("move_").removeprefix("spin_"),
                             justify="right")
    for row in result["timesteps"]:
        by_motion.add_row(str(row["timestep"]),
                          *(f"{row['gap_by_motion'][m]:+.1%}" for m in motion_list))
    console.print(by_motion)


@eval_app.command("ablate")
def ablate_command(
    sketch_dir: SketchDir,
    prompts_file: Annotated[Path, typer.Argument(
        help="Text file, one prompt per line; {subject} becomes the sketch's name.")],
    model: ModelOpt = None,
    seeds: SeedsOpt = "0,1",
    steps: StepsOpt = SAMPLER.num_inference_steps,
    frames: FramesOpt = SAMPLER.num_frames,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Also write the table here.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --csv file.")
    ] = False,
    inverter: Inverter = None,
    clip: ClipOpt = None,
    xclip: XClipOpt = None,
    allow_pickle: AllowPickle = False,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The paper's Table 1 ablation: CLIP scores with --clip/--xclip, the paper's numbers
    beside them, and the offline stroke-fidelity and motion scores. The rows beside the
    paper's numbers use the paper's sampler; the 'toolkit:' rows keep frame 1 on the
    drawing, as animate does by default."""
    seed_list = parse_ints(seeds)
    prompt_list = read_prompts(prompts_file)
    settings = eval_settings(steps, frames)
    drawings = read_sketches(sketch_dir)
    check_scorers(clip, xclip)
    check_inverter(inverter)
    if csv_path is not None:
        check_writable(csv_path, force, what="--csv path")
    consistency, alignment = load_scorers(clip, xclip, device, allow_pickle)
    pipe = load(model, device, allow_pickle)
    sketches = as_arrays(drawings, pipe.model_resolution)
    with progress_bar("sampling") as progress:
        rows = runs.run_ablation(pipe, sketches, prompt_list, seed_list, settings,
                                 progress=progress, consistency=consistency,
                                 alignment=alignment, inverter=inverter)
    if csv_path is not None:
        write_csv(rows, csv_path)
    if json_output:
        emit_json({"model": model, "steps": steps, "seeds": seed_list, "clip": clip,
                   "xclip": xclip, "rows": rows,
                   "paper_table_1": {name: asdict(s) for name, s in PAPER_TABLE_1.items()}})
    console.print(table_1(rows, f"ablation ({model}, {steps} steps, {len(sketches)} sketches "
                                f"x {len(prompt_list)} prompts x {len(seed_list)} seeds)"))
    if consistency is None or alignment is None:
        console.print("S2V and T2V are measured with --clip and --xclip (docs/evaluation.md)",
                      highlight=False)
    console.print(offline_table(rows))
    if csv_path is not None:
        console.print(f"[green]wrote[/] {escape(str(csv_path))}", highlight=False)



def paper_scores_table(result: dict, title: str) -> Table:
    """Each clip's CLIP scores (a table of their own: the sketch bar is wide already)."""
    table = Table(title=escape(title))
    for column in ("sketch", "prompt", "seed", "S2V consistency", "T2V alignment"):
        table.add_column(column, justify="right" if " " in column else "left")
    for case in result["cases"]:
        table.add_row(escape(case["sketch"]), escape(case["prompt"]), str(case["seed"]),
                      fmt(case["s2v_consistency"]), fmt(case["t2v_alignment"]))
    table.add_row("mean", "", "", fmt(result["s2v_consistency"]), fmt(result["t2v_alignment"]),
                  style="bold")
    return table


def table_1(rows: list[dict], title: str) -> Table:
    """The paper's Table 1 layout: a row per method, each CLIP score beside the paper's
    number; the paper's other methods close the table for comparison."""
    table = Table(title=escape(title),
                  caption="paper: FlipSketch Table 1 (ModelScope T2V + sketch LoRA), beside "
                          "rows sampled as the paper (--paper); 'toolkit:' rows keep frame 1 "
                          "on the drawing; - where not measured or not reported")
    for column in ("method", "S2V consistency", "paper", "T2V alignment", "paper"):
        table.add_column(column, justify="left" if column == "method" else "right",
                         no_wrap=True)
    for row in rows:
        table.add_row(row["config"], fmt(row["s2v_consistency"]),
                      fmt(row["paper_s2v_consistency"]), fmt(row["t2v_alignment"]),
                      fmt(row["paper_t2v_alignment"]))
    table.add_section()
    reproduced = {row["paper_row"] for row in rows}
    for name, scores in PAPER_TABLE_1.items():
        if name not in reproduced:
            table.add_row(f"{name} (paper)", "-", fmt(scores.s2v_consistency), "-",
                          fmt(scores.t2v_alignment), style="dim")
    return table


def offline_table(rows: list[dict]) -> Table:
    """The same rows scored on the ink: stroke fidelity, motion, direction, sampling time."""
    table = Table(title="offline scores (stroke fidelity and motion)")
    for column in ("method", "fidelity 1st", "fidelity later", "compensated", "motion px",
                   "direction acc.", "seconds"):
        table.add_column(column, justify="left" if column == "method" else "right",
                         no_wrap=column == "method")
    for row in rows:
        table.add_row(row["config"], fmt(row["fidelity_first"]), fmt(row["fidelity_later"]),
                      fmt(row["fidelity_compensated"]), fmt(row["motion_px"], ".1f"),
                      fmt(row["direction_accuracy"], ".0%"), fmt(row["seconds"], ".1f"))
    return table
