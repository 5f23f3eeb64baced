"""How hard does composition push, next to the prompt? A sampler-or-model diagnostic.

At every composed step of a real sampling run, the joint pass's conditional rows are computed
twice: composed (what the sampler uses) and plain (the same call with composition off). The
report is, per step, over frames 2..M:

- grip: |eps_composed - eps_plain| / |eps_plain|, how much composition changes the
  prediction at all;
- vs text: |eps_composed - eps_plain| / |eps_cond - eps_uncond|, its push next to the
  prompt's (the guidance direction, which CFG multiplies by 9 while composition acts inside
  the conditional branch only, so it is multiplied by 9 too);
- towards frame 1: how much nearer frame 1's predicted clean latent (from the plain pass:
  the drawing's trajectory) the later frames' are with composition than without (1 - distance
  composed / distance plain, guided outputs): the direction of the push. Positive:
  composition pulls the later frames towards the drawing.

On a model whose attention carries the drawing, composition's push is of the prompt's order;
if it is a few per cent of it, no lambda or rule can make the orderings show and the witness
fails for the model, not the sampler.

    python scripts/composition_grip.py --model tiny --sketch example:fish
"""

from __future__ import annotations

import argparse

import torch

from flipsketch.api import SamplerSettings, animate, load_pipeline
from flipsketch.sampler.attention import _SelfAttentionProcessor
from flipsketch.sampler.pipeline import FlipSketchPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--sketch", default="example:fish")
    parser.add_argument("--prompt", default="a fish swimming to the right")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--lambda", dest="lambda_", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compose", default="both", help="both, spatial or temporal")
    parser.add_argument("--lambda-rule", choices=("logit", "weight"),
                        help="what lambda's factor scales (default: the model's own)")
    args = parser.parse_args()

    pipe = load_pipeline(args.model)
    predict = FlipSketchPipeline.predict
    rows: list[tuple[float, float, float]] = []
    guidance = SamplerSettings().guidance_scale

    def clean(latents, t, out):
        """The predicted clean latents x0 from the model's output, as DDIM computes them."""
        a = pipe.scheduler.alphas_cumprod[int(t)]
        if pipe.scheduler.config.prediction_type == "v_prediction":
            return a.sqrt() * latents - (1 - a).sqrt() * out
        return (latents - (1 - a).sqrt() * out) / a.sqrt()

    def spread(x0, target):  # mean distance of frames 2..M to target, (b, c, M, h, w)
        return float((x0[:, :, 1:] - target).flatten(2).norm(dim=1).mean())

    def measured(self, latents, t, embeds):
        out = predict(self, latents, t, embeds)
        processors = [p for p in self.unet.attn_processors.values()
                      if isinstance(p, _SelfAttentionProcessor)]
        if not processors or processors[0].composition.mode != "compose":
            return out
        composition = processors[0].composition
        composition.mode = None
        try:
            plain = predict(self, latents, t, embeds)
        finally:
            composition.mode = "compose"
        uncond, cond = plain.chunk(2)  # (b, c, M, h, w) each, CFG rows first
        later = slice(1, None)  # frames 2..M
        change = (out.chunk(2)[1] - cond)[:, :, later].norm()
        x_t = latents.chunk(2)[0]
        guided = [u + guidance * (c - u) for u, c in (out.chunk(2), (uncond, cond))]
        composed_x0, plain_x0 = (clean(x_t, t, g) for g in guided)
        target = plain_x0[:, :, :1]  # frame 1 (the drawing's trajectory), plain pass
        composed, plain = spread(composed_x0, target), spread(plain_x0, target)
        rows.append((float(change / cond[:, :, later].norm()),
                     float(change / (cond - uncond)[:, :, later].norm()),
                     1 - composed / plain))
        return out

    FlipSketchPipeline.predict = measured
    try:
        with torch.no_grad():
            animate(pipe, args.prompt, args.sketch,
                    SamplerSettings(num_inference_steps=args.steps, align=False,
                                    lambda_=args.lambda_, seed=args.seed,
                                    compose=args.compose, lambda_rule=args.lambda_rule),
                    cache=False)
    finally:
        FlipSketchPipeline.predict = predict
    print(f"{args.model}: {len(rows)} composed steps")
    print("step  grip   vs text  towards frame 1")
    for i, (grip, vs_text, towards) in enumerate(rows):
        print(f"{i:4d}  {grip:.3f}  {vs_text:.3f}    {towards:+.3f}")
    means = [sum(column) / len(column) for column in zip(*rows, strict=True)]
    print(f"mean  {means[0]:.3f}  {means[1]:.3f}    {means[2]:+.3f}")


if __name__ == "__main__":
    main()
