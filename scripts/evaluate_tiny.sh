#!/usr/bin/env bash
# The numbers in the tiny model's card (src/flipsketch/models/weights/tiny/README.md), reproducibly.
#   scripts/evaluate_tiny.sh [MODEL] [OUT_DIR]
# Bar 1: text-only motion over every subject (translations, 2 seeds) and grow/shrink/spin.
# Bar 2: the paper's ablation on the real sketches in ../shared/sketches and on held-out
#        synthetic drawings, with the prompts of configs/eval_prompts.txt (the two horizontal
#        directions and two part motions any drawing can make), 2 seeds: later frames'
#        motion-compensated fidelity (fidelity_compensated) with and without composition, the
#        lambda rows, frame 1's stroke recall (recall_first) and direction with a sketch.
#        Then the caption-sensitivity check. Two evaluations run at a time, one CPU thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-tiny}
out=${2:-runs/eval}
mkdir -p "$out/heldout-sketches"
export OMP_NUM_THREADS=1

python - "$out/heldout-sketches" <<'PY'
import sys
import numpy as np
from PIL import Image
from flipsketch.training.synth import HELD_OUT_PAIRS, SketchAnimator
animator = SketchAnimator(size=128, seed=7, held_out=True)  # drawings never trained on
for subject, motion in HELD_OUT_PAIRS[:4]:  # fish, cat, cloud, bird
    clip = animator.render(subject, motion, np.random.default_rng(7))
    Image.fromarray((clip.frames[0] * 255).astype("uint8")).save(f"{sys.argv[1]}/{subject}.png")
PY

python -m flipsketch eval motion --model "$model" --seeds 0,1 \
    --motions move_left,move_right,move_up,move_down --json > "$out/motion-translate.json" &
python -m flipsketch eval ablate ../shared/sketches configs/eval_prompts.txt --model "$model" \
    --seeds 0,1 --csv "$out/ablation-shared.csv" --force --json > "$out/ablation-shared.json" &
wait
python -m flipsketch eval motion --model "$model" --seeds 0,1 \
    --subjects ball,star,fish,house,heart,car --motions grow,shrink,spin_cw,spin_ccw \
    --json > "$out/motion-other.json" &
python -m flipsketch eval ablate "$out/heldout-sketches" configs/eval_prompts.txt \
    --model "$model" --seeds 0,1 --csv "$out/ablation-heldout.csv" --force \
    --json > "$out/ablation-heldout.json" &
wait
# Does the model use the motion words at all? (no sampling; about a minute)
python -m flipsketch eval captions --model "$model" --json > "$out/captions.json"
# And look at it: the shared sketches with and without composition, both post-processors.
python scripts/make_gallery.py --model "$model" -o "$out/gallery"
echo "wrote $out"
