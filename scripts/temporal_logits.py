"""Why lambda changes nothing on a model: the sign of the temporal logits towards frame 1.

C^T multiplies each query frame's attention logit towards frame 1 by (1 + lambda * i / 50)
(paper eq. 9). That raises the attention to frame 1 only where the logit is positive; where it
is negative, a larger factor makes it more negative and the frame attends to frame 1 *less*.
On a model whose logits towards frame 1 are positive (queries aligned with the reference key),
lambda trades motion for fidelity as the paper says; on one whose logits sit around zero with
either sign, the two effects cancel and lambda does nothing.

This samples one drawing with composition on and reports, over every composed temporal
attention call, the mean signed logit towards frame 1, the share of positive ones and the
attention frame 1 receives.

    python scripts/temporal_logits.py [--model tiny] [--sketch example:fish] [--steps 10]
"""

from __future__ import annotations

import argparse

import numpy as np

import flipsketch.sampler.attention as attention
from flipsketch.api import SamplerSettings, animate, load_pipeline
from flipsketch.frames.images import load_sketch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--sketch", default="example:fish")
    parser.add_argument("--prompt", default="a fish swimming to the right")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    rows = []  # (mean signed logit to frame 1, share positive, attention to frame 1) per call
    scaled = attention.scaled_temporal_attention

    def observed(heads, query, key, value, lambda_, frame_index_base=1):
        q, k = (attention.split_heads(x, heads) for x in (query, key))  # (rows, heads, M, d)
        logits = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (rows, heads, M, M)
        to_first = logits[..., 0]  # (rows, heads, M): every query frame's logit to frame 1
        rows.append((to_first.mean().item(), (to_first > 0).float().mean().item(),
                     logits.softmax(-1)[..., 0].mean().item()))
        return scaled(heads, query, key, value, lambda_, frame_index_base)

    attention.scaled_temporal_attention = observed  # the processors look it up per call
    pipe = load_pipeline(args.model)
    animate(pipe, args.prompt, load_sketch(args.sketch),
            SamplerSettings(num_inference_steps=args.steps, align=False), cache=False)
    mean = np.array(rows).mean(axis=0)
    print(f"{len(rows)} composed temporal attention calls ({args.model}, {args.sketch}): "
          f"mean logit to frame 1 {mean[0]:+.3f}, positive {100 * mean[1]:.0f} %, "
          f"attention to frame 1 {mean[2]:.3f} (uniform: {1 / SamplerSettings().num_frames:.3f})")


if __name__ == "__main__":
    main()
