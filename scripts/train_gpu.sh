#!/usr/bin/env bash
# Train the embedded tiny model on one GPU for a fixed time, then leave the model folder and
# the loss log in OUT_DIR:
#
#   scripts/train_gpu.sh OUT_DIR MINUTES [extra 'flipsketch train base' options]
#
# Synthetic clips are drawn on the machine's own cores (nproc - 2 worker processes), so it needs
# no data; the run folder (checkpoints, resumable with --resume) is RUN_DIR (default
# runs/tiny-gpu). MINUTES bounds the UNet stage; loading and the final export add about a
# minute. Tested on CPU with: CUDA_VISIBLE_DEVICES= scripts/train_gpu.sh /tmp/out 0.5
# --set mixed_precision=no --set stages.base.batch_size=2
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: scripts/train_gpu.sh OUT_DIR MINUTES [train base options]" >&2
    exit 2
fi
out=$1
minutes=$2
shift 2
run=${RUN_DIR:-runs/tiny-gpu}
workers=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
python=${PYTHON:-python3}
mkdir -p "$out"

# One GPU outruns one core drawing clips: a large pool drawn fresh (never cached) by workers.
"$python" -m flipsketch train base -o "$run" --export "$out/model" \
    --time-limit "$minutes" \
    --set mixed_precision=bf16 \
    --set stages.base.batch_size=64 \
    --set stages.base.lr=3.0e-4 \
    --set stages.base.clips=5000000 \
    --set stages.base.cache_latents=false \
    --set stages.base.num_workers="$workers" \
    --set stages.base.checkpoint_every=1000 \
    --set stages.base.export_every=1000 \
    --set stages.base.log_every=50 \
    "$@"
cp "$run/loss.jsonl" "$run/config.yaml" "$out/"
