"""What FlipSketch costs on top of plain sampling, measured side by side.

Variants, all with the same weights, prompt, seed and settings (T steps, M frames, CFG):

    plain    guided text-to-video sampling of the same UNet, no FlipSketch stage
    compose  sketch inversion + reference passes + attention composition (no alignment)
    full     the whole method with the default alignment settings

Each run is a fresh subprocess, so its peak memory is its own; the variants alternate over
``--repeats`` rounds and the median time is kept. A separate, untimed run measures how much of
the alignment loss L_align the default settings remove next to the authors' 10 Adam steps at
lr 1e-3, from the same starting latents. The last line printed is one JSON object.

    python benchmarks/bench_sampler.py --model tiny
    python benchmarks/bench_sampler.py --arch modelscope-full --steps 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SKETCH = Path(__file__).resolve().parents[2] / "shared" / "sketches" / "fish.png"
PROMPT = "a fish swimming to the right"
VARIANTS = ("plain", "compose", "full")


# -- the child: one measured run ----------------------------------------------------------------
def build_pipeline(args):
    import torch

    from flipsketch.api import load_pipeline

    if args.arch != "modelscope-full":
        return load_pipeline(args.model, device=args.device)
    # The full-size ModelScope UNet (diffusers' defaults are its config) with random weights;
    # small VAE and text encoder, which cost next to nothing beside it.
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from flipsketch.models.backbone import resolve_device, resolve_dtype
    from flipsketch.models.presets import TINY_DIR
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    device = resolve_device(args.device)
    dtype = resolve_dtype("bf16", device)
    torch.manual_seed(0)
    unet = UNet3DConditionModel(sample_size=32).to(dtype)
    vae = AutoencoderKL(block_out_channels=(16, 16, 16, 16), norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=256)
    tokenizer = CLIPTokenizer.from_pretrained(TINY_DIR / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=1024,
        num_hidden_layers=1, num_attention_heads=16)).to(dtype)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False, set_alpha_to_one=False)
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False).eval()
    return FlipSketchPipeline(vae, text_encoder, tokenizer, unet, scheduler).to(device)


def sketch_image():
    from PIL import Image, ImageDraw

    if SKETCH.exists():
        return Image.open(SKETCH)
    image = Image.new("L", (256, 256), 255)
    ImageDraw.Draw(image).ellipse((60, 80, 200, 180), outline=0, width=4)
    return image


def reset_peak_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:  # Linux: writing 5 to clear_refs resets the process's peak resident size
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory(device) -> int:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_child(args) -> dict:
    import torch

    from flipsketch.api import SamplerSettings, animate

    torch.set_num_threads(args.threads)
    pipe = build_pipeline(args)
    settings = SamplerSettings(num_frames=args.frames, num_inference_steps=args.steps,
                               guidance_scale=9.0, seed=0, align=args.variant == "full")
    sketch = None if args.variant == "plain" else sketch_image()
    device = pipe.unet.device
    reset_peak_memory(device)
    started = time.perf_counter()
    [clip] = animate(pipe, PROMPT, sketch, settings)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - started, "peak_bytes": peak_memory(device)}


def run_align_quality(args) -> dict:
    """L_align removed per aligned step: defaults vs the authors' 10 Adam steps at 1e-3."""
    import torch

    from flipsketch import hookimpl
    from flipsketch.api import SamplerSettings, animate
    from flipsketch.plugins import PluginManager
    from flipsketch.sampler.alignment import AlignSettings, gradient_align

    torch.set_num_threads(args.threads)
    pipe = build_pipeline(args)
    records = []

    def final_loss(latents, t, cond, target) -> float:
        with torch.no_grad():
            first = pipe.predict(latents, t, cond)[:, :, :1].float()
        return ((first - target) ** 2).mean().item()

    class MeasuringAligner:
        @hookimpl
        def register_aligners(self, register) -> None:
            def align(pipe_, latents, ref, t, cond, target, settings):
                start = final_loss(latents, t, cond, target)  # frame 1 is already the ref
                ours, ours_losses = gradient_align(pipe_, latents, ref, t, cond, target, settings)
                demo, _ = gradient_align(pipe_, latents, ref, t, cond, target,
                                         AlignSettings(iterations=10, lr=1e-3))
                records.append({"start": start, "defaults": final_loss(ours, t, cond, target),
                                "demo": final_loss(demo, t, cond, target)})
                return ours, ours_losses

            register("measuring", align)

    manager = PluginManager()
    manager.register(MeasuringAligner(), name="measuring")
    settings = SamplerSettings(num_frames=args.frames, num_inference_steps=args.steps, seed=0)
    animate(pipe, PROMPT, sketch_image(), settings, aligner="measuring", manager=manager)

    def removed(key: str) -> float:
        return statistics.mean(1 - r[key] / r["start"] for r in records)

    return {"align_removed_defaults": removed("defaults"), "align_removed_demo": removed("demo"),
            "align_steps": len(records)}


# -- the parent: alternate variants in fresh processes ------------------------------------------
def child(args, variant: str) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--model", args.model,
               "--steps", str(args.steps), "--frames", str(args.frames),
               "--threads", str(args.threads)]
    if args.arch:
        command += ["--arch", args.arch]
    if args.device:
        command += ["--device", args.device]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{variant} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny or a diffusers model folder")
    parser.add_argument("--arch", choices=["modelscope-full"], default=None,
                        help="full-size ModelScope UNet with random weights (bf16)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-align-quality", action="store_true")
    parser.add_argument("--child", choices=[*VARIANTS, "align-quality"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "align-quality":
        print(json.dumps(run_align_quality(args)))
        return
    if args.child:
        args.variant = args.child
        print(json.dumps(run_child(args)))
        return

    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for round_ in range(args.repeats):
        for variant in VARIANTS:
            runs[variant].append(child(args, variant))
            last = runs[variant][-1]
            print(f"round {round_ + 1} {variant:8s} {last['seconds']:8.2f} s "
                  f"peak {last['peak_bytes'] / 2**20:9.1f} MiB", flush=True)
    seconds = {v: statistics.median(r["seconds"] for r in runs[v]) for v in VARIANTS}
    peak = {v: max(r["peak_bytes"] for r in runs[v]) for v in VARIANTS}
    summary = {
        "model": args.arch or args.model, "steps": args.steps, "frames": args.frames,
        "plain_s": round(seconds["plain"], 3), "compose_s": round(seconds["compose"], 3),
        "full_s": round(seconds["full"], 3),
        "compose_ratio": round(seconds["compose"] / seconds["plain"], 3),
        "full_ratio": round(seconds["full"] / seconds["plain"], 3),
        "plain_peak_mib": round(peak["plain"] / 2**20, 1),
        "full_peak_mib": round(peak["full"] / 2**20, 1),
        "full_mem_ratio": round(peak["full"] / peak["plain"], 3),
    }
    if not args.no_align_quality:
        summary.update({k: round(v, 4) if isinstance(v, float) else v
                        for k, v in child(args, "align-quality").items()})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
