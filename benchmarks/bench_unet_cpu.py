"""The UNet alone on the CPU: which settings make the default run's guided pass faster?

Times one guided joint pass of the default run (uncond + cond rows, 10 frames) of the
embedded model, each variant in turn, interleaved round by round so that all see the same
machine, and prints the median seconds and the ratio to the plain call:

- plain: the model as ``load_pipeline`` returns it (fp32, contiguous);
- channels-last: convolution weights in channels-last memory format;
- 1 thread / 2 threads: ``torch.set_num_threads`` (the command line uses torch's default);
- inference mode: ``torch.inference_mode`` instead of ``no_grad``;
- bf16 autocast / bf16 weights: bfloat16 arithmetic (this CPU's AVX-512 BF16 instructions,
  where it has them) under ``torch.autocast``, or with the weights cast to bfloat16;
- compiled: ``torch.compile`` (its first call, the compilation, is printed apart).

Each variant's output is compared with the plain call's: "max diff" is the largest absolute
difference (0: the same numbers).

    python benchmarks/bench_unet_cpu.py [--model tiny] [--rounds 5] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch

from flipsketch.api import SamplerSettings, load_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()

    pipe = load_pipeline(args.model)
    unet = pipe.unet.eval()
    settings = SamplerSettings()
    c, size = unet.config.in_channels, unet.config.sample_size
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn((2, c, settings.num_frames, size, size), generator=generator)
    embeds = pipe.encode_prompt(["", "a fish swimming"]).detach()  # (2, 77, d)
    t = pipe.scheduler.config.num_train_timesteps // 2
    threads = torch.get_num_threads()

    def call(model, x, grad=torch.no_grad) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with grad():
                return model(x, t, encoder_hidden_states=embeds).sample
        return run

    variants: dict[str, Callable[[], torch.Tensor]] = {"plain": call(unet, latents)}
    variants["inference mode"] = call(unet, latents, torch.inference_mode)

    def with_threads(n: int, run: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def threaded() -> torch.Tensor:
            torch.set_num_threads(n)
            try:
                return run()
            finally:
                torch.set_num_threads(threads)
        return threaded

    variants["1 thread"] = with_threads(1, call(unet, latents))
    variants["2 threads"] = with_threads(2, call(unet, latents))
    last = copy.deepcopy(unet)
    for param in last.parameters():  # spatial convs are Conv2d (frames in the batch), temporal 3d
        if param.dim() in (4, 5):
            param.data = param.data.contiguous(memory_format=torch.channels_last
                                               if param.dim() == 4 else torch.channels_last_3d)
    variants["channels-last"] = call(last, latents)

    def autocast(run: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def cast() -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return run().float()
        return cast

    variants["bf16 autocast"] = autocast(call(unet, latents))
    half = copy.deepcopy(unet).to(torch.bfloat16)
    embeds_bf16 = embeds.to(torch.bfloat16)

    def bf16_weights() -> torch.Tensor:
        with torch.no_grad():
            return half(latents.to(torch.bfloat16), t,
                        encoder_hidden_states=embeds_bf16).sample.float()

    variants["bf16 weights"] = bf16_weights
    if args.compile:
        compiled = torch.compile(copy.deepcopy(unet))
        started = time.perf_counter()
        call(compiled, latents)()
        print(f"torch.compile: first call (compiling) {time.perf_counter() - started:.1f} s")
        variants["compiled"] = call(compiled, latents)

    reference = variants["plain"]()
    diffs = {name: float((run() - reference).abs().max()) for name, run in variants.items()}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    plain = statistics.median(seconds["plain"])
    print(f"{args.model}: one guided joint pass, {settings.num_frames} frames, torch threads "
          f"{threads}, {args.rounds} rounds")
    print("| variant | median s | ratio to plain | max diff |")
    print("| --- | --- | --- | --- |")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / plain:.2f} | {diffs[name]:.1e} |")


if __name__ == "__main__":
    main()
