"""``flipsketch animate SKETCH PROMPT`` and ``flipsketch generate PROMPT``.

``generate`` is ``animate`` without the sketch (text-only mode): both commands declare their
options with the same ``Annotated`` aliases below and call ``_run``. Everything that can be
checked is checked before the model loads — option values, stage names, the sketch file, the
output path — so bad input costs nothing and writes nothing.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from flipsketch.api import Request, check_request, check_resources
from flipsketch.cli.app import app, console, stdout
from flipsketch.cli.options import values, with_options
from flipsketch.errors import UsageError
from flipsketch.plugins import PluginManager

Opt = typer.Option

Sketch = Annotated[Path, typer.Argument(
    help="The drawing to animate (PNG, JPEG, WebP...), or example:NAME for one shipped with "
         "flipsketch (example:fish, example:cat, example:camel, example:horse, example:cloud).")]
Prompt = Annotated[str, typer.Argument(help="How it should move, e.g. 'a fish swimming'.")]
# animate's prompt: optional to the parser only, so that a prompt typed without a drawing (read
# as the drawing) gets a line naming `flipsketch generate` instead of "Missing argument".
AnimatePrompt = Annotated[str | None, typer.Argument(
    help="How it should move, e.g. 'a fish swimming'. Required; for a prompt alone, "
         "use flipsketch generate.", show_default=False)]

# -- output
Output = Annotated[Path | None, Opt(
    "--output", "-o", help="File (.gif .mp4 .webp .png) or folder for PNG frames. "
                           "Default: <sketch name>.gif, animation.gif without a sketch.")]
# -- model
Model = Annotated[str | None, Opt(
    "--model", help="Preset (tiny, modelscope-sketch, modelscope), local folder or hub id. "
                    "Default: $FLIPSKETCH_MODEL, else 'flipsketch models default', else tiny.")]
Unet = Annotated[str | None, Opt(
    "--unet", metavar="PATH_OR_ID[:SUBFOLDER]", help="Fine-tune whose unet/ replaces the model's.")]
Lora = Annotated[list[str] | None, Opt(
    "--lora", metavar="DIR[:SCALE]", help="LoRA adapter folder; repeat for several.")]
AllowPickle = Annotated[bool, Opt(
    "--allow-pickle", help="Also load pickled weights (runs code from the file).")]
Device = Annotated[str | None, Opt(
    "--device", help="cpu, cuda, cuda:N or mps. Default: the best available.")]
Dtype = Annotated[str | None, Opt(
    "--dtype", help="fp32, bf16 or fp16. Default: fp32 on CPU, bf16 on CUDA.")]
Keep = Annotated[int | None, Opt(
    "--keep", help="Write only the J samples that keep the drawing best, numbered by rank: "
                   "<name>-1 is the best, even with --keep 1; every score is in --json. "
                   "Needs a drawing.")]
RankModel = Annotated[str | None, Opt(
    "--rank-model", metavar="CLIP_ID_OR_PATH",
    help="Rank --keep by CLIP sketch-to-video consistency with this CLIP model instead of "
         "the motion-compensated stroke F-score.")]
NoCache = Annotated[bool, Opt(
    "--no-cache", help="Invert the drawing afresh instead of reusing an earlier run's "
                       "inversion (kept in the user cache folder).")]
Backbone = Annotated[str | None, Opt("--backbone")]
Svg = Annotated[bool, Opt(
    "--svg", help="With a folder output (-o frames/), one SVG per frame instead of PNG "
                  "(the flipsketch-svg plugin; -o clip.svg is an animated SVG).")]
Force = Annotated[bool, Opt("--force", help="Overwrite outputs.")]
JsonOutput = Annotated[bool, Opt("--json", help="Print a machine-readable summary on stdout.")]


def drawing_argument(sketch: Path, prompt: str | None) -> Path:
    """``animate``'s drawing as a file (``example:NAME`` resolved), after the two mistakes of
    argument order a newcomer makes, each named in one line with the fix: a prompt given
    alone (the parser took it for the drawing), and a sentence where the drawing goes."""
    from flipsketch.frames.examples import is_example, resolve_sketch

    path = resolve_sketch(sketch)
    if prompt is None:
        if is_example(sketch) or path.exists():
            raise UsageError(f"missing the prompt after the drawing; say how it should move: "
                             f"flipsketch animate {shlex.quote(str(sketch))} 'a fish swimming'")
        raise UsageError(f"{shlex.quote(str(sketch))} was read as the drawing and no prompt "
                         f"followed; for a prompt alone use `flipsketch generate "
                         f"{shlex.quote(str(sketch))}`, or put a drawing first: `flipsketch "
                         f"animate DRAWING {shlex.quote(str(sketch))}`")
    if not path.exists() and looks_like_a_sentence(str(sketch)):
        raise UsageError(f"the drawing '{sketch}' does not exist and reads like a sentence; "
                         f"the drawing comes first, then the prompt (flipsketch animate "
                         f"DRAWING PROMPT), and `flipsketch generate PROMPT` animates text "
                         f"alone")
    return path


def looks_like_a_sentence(text: str) -> bool:
    """Whether a drawing argument reads as words rather than a file name: two words or more,
    no folder, no file suffix ("a fish swimming"; not "my drawings/fish 2.png")."""
    suffix = Path(text).suffix
    return (len(text.split()) >= 2 and not any(sep in text for sep in "/\\")
            and not re.fullmatch(r"\.[A-Za-z0-9]{1,5}", suffix))


def checked_request(prompt: str | None, options: dict[str, Any], backbone: str | None,
                    manager: PluginManager) -> Request:
    """The sampler and output options every sampling command shares (``**options``, see
    ``cli.options``), checked and named by their flags before anything loads, and the
    prompt unless it is None (``batch``, whose rows bring their own)."""
    manager.get("backbone", backbone)
    return check_request(prompt, values(options), manager)


@app.command("animate")
@with_options
def animate_command(
    sketch: Sketch,
    prompt: AnimatePrompt = None,
    output: Output = None,
    model: Model = None,
    unet: Unet = None,
    lora: Lora = None,
    allow_pickle: AllowPickle = False,
    device: Device = None,
    dtype: Dtype = None,
    keep: Keep = None,
    rank_model: RankModel = None,
    no_cache: NoCache = False,
    backbone: Backbone = None,
    svg: Svg = False,
    force: Force = False,
    json_output: JsonOutput = False,
    **options: Any,
) -> None:
    """Animate a drawing as the prompt describes (FlipSketch)."""
    sketch = drawing_argument(sketch, prompt)
    _run(sketch=sketch, prompt=prompt, output=output, model=model, unet=unet, lora=lora,
         allow_pickle=allow_pickle, device=device, dtype=dtype, keep=keep,
         rank_model=rank_model, no_cache=no_cache, backbone=backbone, svg=svg, force=force,
         json_output=json_output, options=options)


@app.command("generate")
@with_options
def generate_command(
    prompt: Prompt,
    output: Output = None,
    model: Model = None,
    unet: Unet = None,
    lora: Lora = None,
    allow_pickle: AllowPickle = False,
    device: Device = None,
    dtype: Dtype = None,
    no_cache: NoCache = False,
    backbone: Backbone = None,
    svg: Svg = False,
    force: Force = False,
    json_output: JsonOutput = False,
    **options: Any,
) -> None:
    """Generate a sketch animation from text alone (no drawing)."""
    _run(sketch=None, prompt=prompt, output=output, model=model, unet=unet, lora=lora,
         allow_pickle=allow_pickle, device=device, dtype=dtype, keep=None, rank_model=None,
         no_cache=no_cache, backbone=backbone, svg=svg, force=force, json_output=json_output,
         options=options)  # nothing to rank against


def _run(*, sketch: Path | None, prompt: str, output: Path | None, model: str | None,
         unet: str | None, lora: list[str] | None, allow_pickle: bool, device: str | None,
         dtype: str | None, keep: int | None, rank_model: str | None, no_cache: bool,
         backbone: str | None, svg: bool, force: bool, json_output: bool,
         options: dict[str, Any]) -> None:
    """``animate`` with ``sketch``, ``generate`` with None: check, sample, write."""
    # Imported here so that other commands and --help start without loading torch.
    from flipsketch.api import animate, load_pipeline, postprocess, save
    from flipsketch.frames.images import check_drawing, load_sketch, warn_unless_line_art
    from flipsketch.frames.writers import check_output_path, numbered_paths
    from flipsketch.models.presets import default_model
    from flipsketch.plugins import get_manager

    started = time.perf_counter()
    manager = get_manager()
    model = model or default_model()  # --model, else FLIPSKETCH_MODEL, the user's, tiny

    # 1. Check everything that can be checked before the model loads.
    request = checked_request(prompt, options, backbone, manager)
    settings, out = request.settings, request.output
    samples, size = settings.samples, out.size
    if keep is not None and not 1 <= keep <= samples:
        raise UsageError(f"--keep must be between 1 and --samples ({samples}); sample more "
                         f"with --samples K to keep {keep}")
    if rank_model is not None and keep is None:
        raise UsageError("--rank-model ranks the samples that --keep chooses from; add "
                         "--keep J (and --samples K)")
    if rank_model is not None:
        from flipsketch.evaluation.clip_scores import check_source

        check_source(rank_model, "--rank-model")
    image = load_sketch(sketch) if sketch is not None else None
    if image is not None:
        check_drawing(image, f"sketch '{sketch}'")
        warn_unless_line_art(image, f"sketch '{sketch}'")  # a photo: one line, then on
    # Before anything that grows with the request (one output path per sample, say).
    check_resources(model, settings, size, device=device, dtype=dtype, unet=unet,
                    backbone=backbone)
    if output is None:
        stem = sketch.stem if sketch is not None else "animation"
        output = Path(stem if svg else f"{stem}.gif")
    writer = out.writer
    if svg:
        if writer is not None:
            raise UsageError(f"--svg is --writer svg-frames; drop --svg or --writer {writer}")
        if output.suffix:
            raise UsageError(f"--svg writes a folder of SVG frames, and '{output.name}' names "
                             f"a file; drop its suffix (-o {output.stem}) or drop --svg")
        writer = "svg-frames"
    # One rule for every writer and folder: several samples, numbered outputs, even when
    # --keep 1 writes one of them (the best is <name>-1, as --keep's help says).
    outputs = numbered_paths(output, samples if keep is None else keep, manager,
                             numbered=samples > 1)
    for path in outputs:
        if sketch is not None and path.exists() and path.resolve() == sketch.resolve():
            raise UsageError(f"the output '{path}' is the drawing itself, which even --force "
                             "never overwrites; pass another -o")
        check_output_path(path, force=force, manager=manager, writer=writer)

    # 2. Load the models and sample, with progress.
    scorer = None
    if rank_model is not None:
        from flipsketch.evaluation.clip_scores import load_clip_consistency
        from flipsketch.evaluation.ranking import clip_scorer

        with console.status(f"loading rank model '{escape(rank_model)}'"):
            scorer = clip_scorer(load_clip_consistency(rank_model, device=device,
                                                       allow_pickle=allow_pickle,
                                                       option="--rank-model"))
    checked = time.perf_counter()
    with console.status(f"loading model '{escape(model)}'"):
        pipe = load_pipeline(model, device=device, dtype=dtype, allow_pickle=allow_pickle,
                             loras=lora or (), unet=unet, backbone=backbone, manager=manager)
    loaded = time.perf_counter()
    with Progress(TextColumn("{task.description:<10}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=not console.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
                if not console.is_terminal:  # no live bar in logs: say what started
                    console.print(f"{stage} ...", markup=False, highlight=False)
            bar.update(tasks[stage], completed=done)

        animations = animate(pipe, request, image, progress=progress, cache=not no_cache,
                             manager=manager)

    # 3. Best-of-K: order the samples by sketch fidelity and keep the J best, whatever
    #    their scores (never none); every score is reported.
    ranked = None
    if keep is not None:
        from flipsketch.evaluation.ranking import fidelity_scores, rank

        ranked = rank(image, animations, scorer or fidelity_scores)
        animations = [r.animation for r in ranked[:keep]]

    # 4. Post-process and write, one file per kept sample.
    sampled = time.perf_counter()
    written = []
    for animation, path in zip(animations, outputs, strict=True):
        images = postprocess(animation.frames, out.postprocessor, size=size, sketch=image,
                             transparent=out.transparent, manager=manager)
        written.append(save(images, path, fps=out.fps, force=force, writer=writer,
                            manager=manager))
    elapsed = time.perf_counter() - started
    if json_output:
        stdout.print_json(json.dumps({
            "outputs": [str(p) for p in written],
            "seeds": [a.seed for a in animations],
            "prompt": prompt,
            "sketch": str(sketch) if sketch is not None else None,
            "model": model,
            "frames": settings.num_frames,
            "size": size,
            # Where the run's time went, in order (benchmarks/bench_animate.py --profile):
            # checks and the rank model, model load, the sampler's phases, ranking, writing.
            "timings": {"checks_s": checked - started, "load_s": loaded - checked,
                        **animations[0].timings, "write_s": elapsed - (sampled - started),
                        "total_s": elapsed},
            "inversion_cached": animations[0].inversion_cached,
            "ranking": None if ranked is None else {
                "by": f"clip:{rank_model}" if rank_model else "fidelity_compensated",
                "samples": [{"seed": r.animation.seed, "score": r.score, "rank": r.rank,
                             "output": str(written[r.rank - 1]) if r.rank <= keep else None}
                            for r in ranked]},
        }))
    if ranked is not None:
        scores = " ".join(f"{r.score:.3f}" + ("" if r.rank <= keep else " (dropped)")
                          for r in ranked)
        console.print(f"kept the best {keep} of {samples} samples by "
                      f"{'CLIP consistency' if rank_model else 'sketch fidelity'}: {scores}",
                      markup=False, highlight=False)
    paths = escape(", ".join(str(p) for p in written))
    console.print(f"[green]wrote[/] {paths} ({settings.num_frames} frames, {size} px) in "
                  f"{elapsed:.1f} s",
                  highlight=False)
