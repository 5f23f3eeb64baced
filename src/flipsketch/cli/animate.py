"""``flipsketch animate SKETCH PROMPT`` and ``flipsketch generate PROMPT``.

Both commands are one function: ``generate`` is ``animate`` without the sketch (text-only
mode). Everything that can be checked is checked before the model loads — option values,
stage names, the sketch file, the output path — so bad input costs nothing and writes
nothing.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from flipsketch.api import DEFAULT_MODEL, SamplerSettings, check_prompt
from flipsketch.cli.app import app, console, stdout
from flipsketch.errors import UsageError

Opt = typer.Option
MODEL = "Model"
SAMPLER = "Sampler"
STAGES = "Stages"
OUTPUT = "Output"


def animate_command(
    sketch: Annotated[Path, typer.Argument(help="The drawing to animate (PNG, JPEG, WebP...).")],
    prompt: Annotated[str, typer.Argument(help="How it should move, e.g. 'a fish swimming'.")],
    output: Annotated[Path | None, Opt("--output", "-o", rich_help_panel=OUTPUT,
        help="File (.gif .mp4 .webp .png) or folder for PNG frames. "
             "Default: <sketch name>.gif")] = None,
    model: Annotated[str, Opt(rich_help_panel=MODEL,
        help="Preset (tiny, modelscope-sketch, modelscope), local folder or hub id.")
    ] = DEFAULT_MODEL,
    unet: Annotated[str | None, Opt(rich_help_panel=MODEL,
        help="Fine-tune whose unet/ replaces the model's: PATH_OR_ID[:SUBFOLDER].")] = None,
    lora: Annotated[list[str] | None, Opt(rich_help_panel=MODEL,
        help="LoRA adapter folder, DIR[:SCALE]; repeat for several.")] = None,
    allow_pickle: Annotated[bool, Opt(rich_help_panel=MODEL,
        help="Also load pickled weights (runs code from the file).")] = False,
    device: Annotated[str | None, Opt(rich_help_panel=MODEL,
        help="cpu, cuda, cuda:N or mps. Default: the best available.")] = None,
    dtype: Annotated[str | None, Opt(rich_help_panel=MODEL,
        help="fp32, bf16 or fp16. Default: fp32 on CPU, bf16 on CUDA.")] = None,
    frames: Annotated[int, Opt(rich_help_panel=SAMPLER, help="Frames M.")] = 10,
    steps: Annotated[int, Opt(rich_help_panel=SAMPLER, help="DDIM steps T.")] = 25,
    guidance: Annotated[float, Opt(rich_help_panel=SAMPLER, help="CFG scale.")] = 9.0,
    negative_prompt: Annotated[str, Opt(rich_help_panel=SAMPLER)] = "",
    lambda_: Annotated[float | None, Opt("--lambda", rich_help_panel=SAMPLER,
        help="Fidelity vs motion: higher keeps the drawing, lower moves more. [default 0.5]")
    ] = None,
    motion: Annotated[float | None, Opt(rich_help_panel=SAMPLER,
        help="The same knob as the demo's slider: motion = 1 - lambda.")] = None,
    tau1: Annotated[int | None, Opt(rich_help_panel=SAMPLER,
        help="Align frames for steps i < tau1. [default 2T/5]")] = None,
    tau2: Annotated[int | None, Opt(rich_help_panel=SAMPLER,
        help="Compose attention for steps i <= tau2. [default 3T/5]")] = None,
    compose: Annotated[str, Opt(rich_help_panel=SAMPLER,
        help="both, spatial, temporal or none.")] = "both",
    no_compose: Annotated[bool, Opt(rich_help_panel=SAMPLER,
        help="Same as --compose none.")] = False,
    no_align: Annotated[bool, Opt(rich_help_panel=SAMPLER,
        help="Skip iterative frame alignment.")] = False,
    keep_first_frame: Annotated[bool, Opt(
        "--keep-first-frame/--free-first-frame", rich_help_panel=SAMPLER,
        help="Frame 1 stays the drawing to the last step, or (free) joins the guided "
             "denoising after composition as in the paper.")] = True,
    align_iterations: Annotated[int, Opt(rich_help_panel=SAMPLER)] = SamplerSettings()
    .align_iterations,
    align_lr: Annotated[float, Opt(rich_help_panel=SAMPLER)] = SamplerSettings().align_lr,
    align_optimizer: Annotated[str, Opt(rich_help_panel=SAMPLER, help="adam or sgd.")
    ] = SamplerSettings().align_optimizer,
    align_checkpointing: Annotated[bool | None, Opt(rich_help_panel=SAMPLER,
        help="Recompute activations during alignment to save memory. Default: only for "
             "UNets over 100 M parameters.")] = None,
    seed: Annotated[int, Opt(rich_help_panel=SAMPLER)] = 0,
    samples: Annotated[int, Opt(rich_help_panel=SAMPLER,
        help="K samples with seeds seed..seed+K-1, sampled together; outputs numbered.")] = 1,
    backbone: Annotated[str | None, Opt(rich_help_panel=STAGES)] = None,
    inverter: Annotated[str | None, Opt(rich_help_panel=STAGES)] = None,
    aligner: Annotated[str | None, Opt(rich_help_panel=STAGES, help="Name or none.")] = None,
    composer: Annotated[str | None, Opt(rich_help_panel=STAGES, help="Name or none.")] = None,
    postprocessor: Annotated[str | None, Opt(rich_help_panel=STAGES)] = None,
    raw: Annotated[bool, Opt(rich_help_panel=OUTPUT,
        help="Keep grey levels (post-processor 'raw') instead of black-and-white strokes.")
    ] = False,
    size: Annotated[int, Opt(rich_help_panel=OUTPUT, help="Output pixels (square).")] = 512,
    transparent: Annotated[bool, Opt(rich_help_panel=OUTPUT,
        help="Strokes on a transparent background.")] = False,
    fps: Annotated[float, Opt(rich_help_panel=OUTPUT)] = 10.0,
    force: Annotated[bool, Opt(rich_help_panel=OUTPUT, help="Overwrite outputs.")] = False,
    json_output: Annotated[bool, Opt("--json", rich_help_panel=OUTPUT,
        help="Print a machine-readable summary on stdout.")] = False,
) -> None:
    """Animate a drawing as the prompt describes (FlipSketch)."""
    # Imported here so that other commands and --help start without loading diffusers.
    from flipsketch.api import animate, load_pipeline, postprocess, save
    from flipsketch.frames.images import load_sketch
    from flipsketch.frames.writers import check_output_path, numbered_paths
    from flipsketch.plugins import get_manager

    started = time.perf_counter()
    manager = get_manager()

    # 1. Check everything that can be checked before the model loads.
    if lambda_ is not None and motion is not None:
        raise UsageError("pass either --lambda or --motion (= 1 - lambda), not both")
    if raw and postprocessor not in (None, "raw"):
        raise UsageError("--raw is the 'raw' post-processor; drop --raw or --postprocessor")
    if fps <= 0:
        raise UsageError("--fps must be positive")
    settings = SamplerSettings(
        num_frames=frames, num_inference_steps=steps, guidance_scale=guidance,
        negative_prompt=negative_prompt,
        lambda_=0.5 if lambda_ is None and motion is None else
        (lambda_ if lambda_ is not None else 1 - motion),
        tau1=tau1, tau2=tau2, compose="none" if no_compose else compose,
        align=not no_align, keep_first_frame=keep_first_frame,
        align_iterations=align_iterations, align_lr=align_lr,
        align_optimizer=align_optimizer, align_checkpointing=align_checkpointing,
        seed=seed, samples=samples,
    )
    settings.validate()
    check_prompt(prompt)
    postprocessor = "raw" if raw else postprocessor
    for stage, name in (("backbone", backbone), ("inverter", inverter), ("aligner", aligner),
                        ("composer", composer), ("postprocessor", postprocessor)):
        manager.get(stage, name)
    image = load_sketch(sketch) if sketch is not None else None
    if output is None:
        output = Path(f"{sketch.stem if sketch is not None else 'animation'}.gif")
    outputs = numbered_paths(output, samples, manager)
    for path in outputs:
        check_output_path(path, force=force, manager=manager)

    # 2. Load the model and sample, with progress.
    with console.status(f"loading model '{model}'"):
        pipe = load_pipeline(model, device=device, dtype=dtype, allow_pickle=allow_pickle,
                             loras=lora or (), unet=unet, backbone=backbone, manager=manager)
    with Progress(TextColumn("{task.description:<10}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=not console.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
                if not console.is_terminal:  # no live bar in logs: say what started
                    console.print(f"{stage} ...", highlight=False)
            bar.update(tasks[stage], completed=done)

        animations = animate(pipe, prompt, image, settings, inverter=inverter, aligner=aligner,
                             composer=composer, progress=progress, manager=manager)

    # 3. Post-process and write, one file per sample.
    written = []
    for animation, path in zip(animations, outputs, strict=True):
        images = postprocess(animation.frames, postprocessor, size=size, sketch=image,
                             transparent=transparent, manager=manager)
        written.append(save(images, path, fps=fps, force=force, manager=manager))
    elapsed = time.perf_counter() - started
    if json_output:
        stdout.print_json(json.dumps({
            "outputs": [str(p) for p in written],
            "seeds": [a.seed for a in animations],
            "prompt": prompt,
            "sketch": str(sketch) if sketch is not None else None,
            "model": model,
            "frames": frames,
            "size": size,
            "timings": {**animations[0].timings, "total_s": elapsed},
        }))
    console.print(f"[green]wrote[/] {', '.join(str(p) for p in written)} "
                  f"({frames} frames, {size} px) in {elapsed:.1f} s", highlight=False)


def generate_command(**options) -> None:
    """Generate a sketch animation from text alone (no drawing)."""
    animate_command(sketch=None, **options)


# ``generate`` takes every option of ``animate`` except the sketch: one definition serves both.
_signature = inspect.signature(animate_command, eval_str=True)
generate_command.__signature__ = _signature.replace(
    parameters=[p for p in _signature.parameters.values() if p.name != "sketch"])
generate_command.__annotations__ = {
    name: p.annotation for name, p in _signature.parameters.items() if name != "sketch"}

app.command("animate")(animate_command)
app.command("generate")(generate_command)
