"""What FlipSketch costs on top of plain sampling, measured side by side.

Variants, all with the same weights, prompt, seed and settings (T steps, M frames, CFG 9):

    plain    text only: guided text-to-video sampling of the same UNet, no sketch, no stage
    compose  composition only (--no-align): sketch inversion + reference passes + composition
    full     the whole method: inversion + alignment (default settings) + composition
    full-one-call  the same with each step's reference pass and joint pass in one UNet call
             (``FlipSketchPipeline.one_call``, ``sampler/clips.py``)

The model is ``--model`` (the shipped ``tiny`` model by default, or a diffusers folder), or an
architecture built in memory with random weights (``--arch``), which is enough because this
measures speed and memory, not quality:

    tiny             a few-MB UNet, VAE and text encoder: a smoke test of this benchmark
                     (``scripts/gpu_check.sh --cpu``), seconds on a CPU
    modelscope-full  ModelScope T2V 1.7B's exact architecture (its UNet, an SD-1.5-shaped VAE,
                     the OpenCLIP ViT-H text tower), 256 x 256, bf16 unless --dtype says otherwise

Each run is a fresh subprocess, so its peak memory is its own; the variants alternate over
``--repeats`` rounds and the median time is kept. On CUDA a child first runs its variant
briefly (``--warmup``: kernel loading and cuDNN's autotuning are not the method's cost), then
resets the peak-memory counter and times one run. Memory is ``torch.cuda.max_memory_allocated``
on CUDA and the process's peak resident size (VmHWM, interpreter and weights included) on a
Linux CPU; elsewhere it is reported as null. A separate, untimed run measures how much of the
alignment loss L_align the default settings remove next to the authors' 10 Adam steps at lr
1e-3, from the same starting latents (``--no-align-quality`` skips it). The last line printed
is one JSON object; ``--json PATH`` also writes it to a file.

    python benchmarks/bench_sampler.py --model tiny
    python benchmarks/bench_sampler.py --arch modelscope-full --steps 5
    python benchmarks/bench_sampler.py --arch modelscope-full --device cuda --json bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SKETCH = Path(__file__).resolve().parents[1] / "src" / "flipsketch" / "examples" / "fish.png"
PROMPT = "a fish swimming to the right"
VARIANTS = ("plain", "compose", "full", "full-one-call")
LABELS = {"plain": "text only (plain)", "compose": "composition only", "full": "full method",
          "full-one-call": "full, one call"}
MIB = 2**20


# -- architectures with random weights ----------------------------------------------------------
@dataclass(frozen=True)
class Arch:
    """The constructor arguments of each part; ``dtype`` is the default when --dtype is not
    given (None: the device's own default, fp32 on CPU and bf16 on CUDA)."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    dtype: str | None = None
    description: str = ""
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        set_alpha_to_one=False))


CLIP_VOCAB = 49408  # the CLIP BPE vocabulary of the shipped tokenizer and of OpenCLIP ViT-H

ARCHS: dict[str, Arch] = {
    "tiny": Arch(
        unet=dict(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                  down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                  up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), layers_per_block=1,
                  cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8),
        vae=dict(in_channels=3, out_channels=3, latent_channels=4,
                 down_block_types=("DownEncoderBlock2D",) * 4,
                 up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(16, 16, 16, 16),
                 layers_per_block=1, norm_num_groups=8, sample_size=128),
        text_encoder=dict(vocab_size=CLIP_VOCAB, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=2,
                          max_position_embeddings=77),
        description="a few-MB random-weight model (smoke test)"),
    # damo-vilab/text-to-video-ms-1.7b, written out from its unet/, vae/ and text_encoder/
    # config.json. The UNet's values are also diffusers' defaults for UNet3DConditionModel
    # (the class was written for this model) except sample_size, which defaults to None;
    # tests/test_gpu_check.py checks both and the parameter counts (UNet 1.41 B, text
    # encoder 0.34 B, VAE 0.08 B).
    "modelscope-full": Arch(
        unet=dict(sample_size=32, in_channels=4, out_channels=4,
                  block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                  down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
                  up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
                  downsample_padding=1, mid_block_scale_factor=1, act_fn="silu",
                  norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=1024,
                  attention_head_dim=64),
        # Stable Diffusion 1.5's VAE shape (ModelScope's own): 8x down-sampling, 4 latents.
        vae=dict(in_channels=3, out_channels=3, latent_channels=4,
                 down_block_types=("DownEncoderBlock2D",) * 4,
                 up_block_types=("UpDecoderBlock2D",) * 4,
                 block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                 norm_num_groups=32, act_fn="silu", sample_size=256, scaling_factor=0.18215),
        # OpenCLIP ViT-H/14's text tower, penultimate layer (23 of 24), as SD 2 ships it.
        text_encoder=dict(vocab_size=CLIP_VOCAB, hidden_size=1024, intermediate_size=4096,
                          num_hidden_layers=23, num_attention_heads=16,
                          max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
                          layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1),
        dtype="bf16",
        description="ModelScope T2V 1.7B's architecture, random weights"),
}


def random_components(arch: Arch, device: Any = "cpu") -> dict:
    """The pipeline's parts with random weights, the UNet, VAE and text encoder created on
    ``device`` in fp32: on ``meta`` they take no memory (the test counts parameters), on
    ``cuda`` they are initialised on the GPU (seconds, where the CPU takes minutes). The
    tokenizer is the shipped CLIP tokenizer (no download); the scheduler stays on the CPU."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from flipsketch.models.presets import TINY_DIR

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet3DConditionModel(**arch.unet)
        vae = AutoencoderKL(**arch.vae)
        text_encoder = CLIPTextModel(CLIPTextConfig(**arch.text_encoder))
    return dict(unet=unet, vae=vae, text_encoder=text_encoder,
                tokenizer=CLIPTokenizer.from_pretrained(TINY_DIR / "tokenizer"),
                scheduler=DDIMScheduler(**arch.scheduler))


# -- the child: one measured run ----------------------------------------------------------------
def build_pipeline(args):

    from flipsketch.api import load_pipeline
    from flipsketch.devices import resolve_device, resolve_dtype
    from flipsketch.sampler.pipeline import FlipSketchPipeline

    if args.arch is None:
        return load_pipeline(args.model, device=args.device, dtype=args.dtype)
    arch = ARCHS[args.arch]
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype or arch.dtype, device)
    components = random_components(arch, device)
    for name in ("unet", "vae", "text_encoder"):
        components[name] = components[name].to(dtype).requires_grad_(False).eval()
    return FlipSketchPipeline(**components).to(device)


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
    elif Path("/proc/self/clear_refs").exists():  # Linux: 5 resets the peak resident size
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory(device) -> int | None:
    """Peak bytes since the last reset; None where this platform cannot tell."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else ():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def memory_kind(device: str) -> str:
    if device.startswith("cuda"):
        return "torch.cuda.max_memory_allocated"
    return "peak resident size (VmHWM)" if Path("/proc/self/status").exists() else "n/a"


def run_child(args) -> dict:
    import torch

    from flipsketch.api import SamplerSettings, animate

    torch.set_num_threads(args.threads)
    pipe = build_pipeline(args)
    pipe.one_call = args.variant == "full-one-call"
    device = pipe.unet.device
    sketch = None if args.variant == "plain" else sketch_image()

    def settings(steps: int) -> SamplerSettings:
        return SamplerSettings(num_frames=args.frames, num_inference_steps=steps,
                               guidance_scale=9.0, seed=0,
                               align=args.variant.startswith("full"))

    warmup = args.warmup if args.warmup is not None else int(device.type == "cuda")
    for _ in range(warmup):  # 3 steps: one aligned (tau1 = 1) and composed step, then plain
        animate(pipe, PROMPT, sketch, settings(min(args.steps, 3)), cache=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    reset_peak_memory(device)
    started = time.perf_counter()
    [clip] = animate(pipe, PROMPT, sketch, settings(args.steps), cache=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"seconds": time.perf_counter() - started, "peak_bytes": peak_memory(device),
            "device": str(device), "dtype": str(pipe.unet.dtype).removeprefix("torch."),
            "finite": bool(torch.isfinite(torch.as_tensor(clip.frames)).all())}


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
    animate(pipe, PROMPT, sketch_image(), settings, aligner="measuring", manager=manager,
            cache=False)

    def removed(key: str) -> float:
        return statistics.mean(1 - r[key] / r["start"] for r in records)

    return {"align_removed_defaults": removed("defaults"), "align_removed_demo": removed("demo"),
            "align_steps": len(records)}


# -- the parent: alternate variants in fresh processes ------------------------------------------
def child(args, variant: str) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--model", args.model,
               "--steps", str(args.steps), "--frames", str(args.frames),
               "--threads", str(args.threads)]
    for option in ("arch", "device", "dtype", "warmup"):
        if getattr(args, option) is not None:
            command += [f"--{option}", str(getattr(args, option))]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{variant} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else round(numerator / denominator, 3)


def summarize(args, runs: dict[str, list[dict]]) -> dict:
    """The medians, peaks and ratios of the rounds as one flat JSON-ready dict."""
    seconds = {v: statistics.median(r["seconds"] for r in runs[v]) for v in VARIANTS}
    peaks = {v: [r["peak_bytes"] for r in runs[v] if r["peak_bytes"] is not None]
             for v in VARIANTS}
    peak = {v: max(peaks[v]) if peaks[v] else None for v in VARIANTS}
    first = runs["plain"][0]
    summary: dict[str, Any] = {
        "model": args.arch or args.model, "device": first["device"], "dtype": first["dtype"],
        "steps": args.steps, "frames": args.frames, "repeats": args.repeats,
        "memory": memory_kind(first["device"]),
        "all_finite": all(r.get("finite", True) for v in VARIANTS for r in runs[v]),
    }
    for v in VARIANTS:
        summary[f"{v.replace('-', '_')}_s"] = round(seconds[v], 3)
    summary["compose_ratio"] = ratio(seconds["compose"], seconds["plain"])
    summary["full_ratio"] = ratio(seconds["full"], seconds["plain"])
    summary["full_one_call_ratio"] = ratio(seconds["full-one-call"], seconds["plain"])
    # What sharing a call does: the full method's time with one call a step over its own.
    summary["one_call_ratio"] = ratio(seconds["full-one-call"], seconds["full"])
    for v in VARIANTS:
        key = v.replace("-", "_")
        summary[f"{key}_peak_mib"] = None if peak[v] is None else round(peak[v] / MIB, 1)
        if v != "plain":
            summary[f"{key}_mem_ratio"] = ratio(peak[v], peak["plain"])
    return summary


def report(summary: dict) -> str:
    """The summary as a small table a person reads in a log."""

    def mib(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f} MiB"

    lines = [f"{summary['model']} on {summary['device']} ({summary['dtype']}), "
             f"T = {summary['steps']}, M = {summary['frames']}, median of "
             f"{summary['repeats']}; memory: {summary['memory']}"]
    for v in VARIANTS:
        key = v.replace("-", "_")
        time_ratio = "" if v == "plain" else f"  time ratio {summary[f'{key}_ratio']}"
        mem_ratio = "" if v == "plain" else f"  memory ratio {summary[f'{key}_mem_ratio']}"
        lines.append(f"  {LABELS[v]:18s} {summary[f'{key}_s']:9.2f} s  "
                     f"peak {mib(summary[f'{key}_peak_mib']):>14s}{time_ratio}{mem_ratio}")
    lines.append(f"  one call a step: full, one call / full = {summary['one_call_ratio']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny or a diffusers model folder")
    parser.add_argument("--arch", choices=sorted(ARCHS), default=None,
                        help="an architecture with random weights instead of --model")
    parser.add_argument("--steps", type=int, default=25, help="T (the paper: 25)")
    parser.add_argument("--frames", type=int, default=10, help="M (the paper: 10)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: best)")
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16", "fp16"],
                        help="default: bf16 for modelscope-full, else the device's default")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed short runs per child before the timed one "
                             "(default: 1 on CUDA, 0 on CPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    parser.add_argument("--no-align-quality", action="store_true")
    parser.add_argument("--child", choices=[*VARIANTS, "align-quality"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

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
            peak = "n/a" if last["peak_bytes"] is None else f"{last['peak_bytes'] / MIB:.1f} MiB"
            print(f"round {round_ + 1} {variant:8s} {last['seconds']:8.2f} s peak {peak}",
                  flush=True)
    summary = summarize(args, runs)
    if not args.no_align_quality:
        summary.update({k: round(v, 4) if isinstance(v, float) else v
                        for k, v in child(args, "align-quality").items()})
    print(report(summary))
    if args.json is not None:
        from flipsketch.files import write_text_atomic

        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(summary, indent=2) + "\n", force=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
