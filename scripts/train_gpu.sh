#!/usr/bin/env bash
# One whole GPU training run of the embedded tiny model in one call, everything in OUT_DIR:
#
#   scripts/train_gpu.sh [--cpu] [--steps N] [--config FILE] OUT_DIR MINUTES [train base options]
#
# 1. profile: the first PROFILE_STEPS steps (default 20) run under torch.profiler, each part of
#    a step timed: OUT_DIR/profile/sections.txt (where a step's time goes), ops.txt (operators
#    by GPU time), trace.json.gz (chrome://tracing or Perfetto);
# 2. train: `flipsketch train base` for MINUTES (the UNet stage; loading, evaluation and
#    export add a few minutes) with bf16, batch 64, clips drawn fresh by nproc - 2 worker
#    processes; the EMA weights are exported as training goes and at the last step;
# 3. evaluate the exported model: `flipsketch eval captions` (do the motion words change the
#    loss?) and a short text-only `flipsketch eval motion` (4 subjects x right/left x 2 seeds);
# 4. export: OUT_DIR/model, a complete fp16 model folder (about 37 MB): --model OUT_DIR/model.
#
# OUT_DIR also gets loss.jsonl, config.yaml, captions.json/.txt, motion.json/.txt, summary.txt
# (steps, clips seen, speed, the profile table and the evaluation headlines) and
# train_gpu.log, and nothing else: it stays well under the 64 MiB that comes back from a lent
# machine. Checkpoints hold the optimiser state (about 250 MB each) and stay in the run folder
# RUN_DIR (default runs/tiny-gpu); `--resume` among the train base options continues it.
#
#   --cpu       the same four steps on the CPU at a toy budget, so that a typo fails here and
#               not on the lent GPU (tests/test_train_gpu.py): fp32, batch 2, a pool of 8 clips
#               with cached latents, the evaluations at 1 clip / 2 sampling steps / 3 frames
#   --steps N   stop after N UNet steps (or at MINUTES, whichever comes first)
#   --config    a training config instead of the shipped src/flipsketch/models/tiny.yaml
#
# Python is $PYTHON, else `python`, else `python3`; src/ goes on PYTHONPATH, so flipsketch
# need not be installed.
set -euo pipefail

cpu=0
steps=""
config=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpu) cpu=1; shift ;;
        --steps) steps="${2:?--steps takes a number}"; shift 2 ;;
        --config) config=("${2:?--config takes a file}"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
if [[ $# -lt 2 ]]; then
    echo "usage: scripts/train_gpu.sh [--cpu] [--steps N] [--config FILE] OUT_DIR MINUTES" \
         "[train base options]" >&2
    exit 2
fi
out=$1
minutes=$2
shift 2
[[ "$out" == /* ]] || out="$PWD/$out"  # relative to where it was called from
run=${RUN_DIR:-runs/tiny-gpu}
[[ "$run" == /* ]] || run="$PWD/$run"
if [[ ${#config[@]} -gt 0 && "${config[0]}" != /* ]]; then
    config=("$PWD/${config[0]}")
fi
profile_steps=${PROFILE_STEPS:-20}

cd "$(dirname "$0")/.."
. scripts/_env.sh

if [[ $cpu == 1 ]]; then
    export CUDA_VISIBLE_DEVICES=""  # the CPU even where a GPU is present
    settings=(--set mixed_precision=no --set stages.base.batch_size=2
              --set stages.base.clips=8 --set stages.base.cache_latents=true
              --set stages.base.num_workers=0 --set stages.base.log_every=1)
    captions_eval=(--clips 1 --timesteps 950 --motions move_left,move_right)
    motion_eval=(--seeds 0 --steps 2 --frames 3 --subjects fish --motions move_right
                 --no-held-out)
else
    if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "train_gpu: no CUDA GPU visible to $python; run on a GPU machine, or pass --cpu" \
             "for the CPU dry run" >&2
        exit 1
    fi
    workers=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
    # One GPU outruns one core drawing clips: a large pool drawn fresh (never cached) by
    # workers; the VAE encodes a whole batch's frames in one call (vae_chunk 0).
    settings=(--set mixed_precision=bf16 --set stages.base.batch_size=64
              --set stages.base.lr=3.0e-4 --set stages.base.clips=5000000
              --set stages.base.cache_latents=false --set stages.base.num_workers="$workers"
              --set stages.base.vae_chunk=0 --set stages.base.log_every=50)
    captions_eval=()
    motion_eval=(--seeds 0,1 --subjects fish,bird,cat,car --motions move_left,move_right)
fi
settings+=(--set stages.base.checkpoint_every=1000 --set stages.base.export_every=1000
           --set stages.base.profile_steps="$profile_steps")
[[ -z "$steps" ]] || settings+=(--steps "$steps")

mkdir -p "$out"
exec > >(tee -a "$out/train_gpu.log") 2>&1
echo "train_gpu: $(date -u +%FT%TZ) run $run -> $out, $minutes min$([[ $cpu == 1 ]] && echo ', CPU dry run')"
started=$SECONDS

echo "== 1-2. profile the first $profile_steps steps, train for $minutes min"
"$python" -m flipsketch train base "${config[@]}" -o "$run" --export "$out/model" \
    --time-limit "$minutes" "${settings[@]}" "$@"
cp "$run/loss.jsonl" "$run/config.yaml" "$out/"
rm -rf "$out/profile"
cp -r "$run/profile" "$out/profile"
trained=$SECONDS

echo "== 3. evaluate $out/model"
"$python" -m flipsketch eval captions --model "$out/model" "${captions_eval[@]}" --json \
    > "$out/captions.json" 2> "$out/captions.txt"
"$python" -m flipsketch eval motion --model "$out/model" "${motion_eval[@]}" --json \
    > "$out/motion.json" 2> "$out/motion.txt"

echo "== 4. export: $out/model (written by the run's last step)"
"$python" - "$out" "$(( trained - started ))" "$(( SECONDS - trained ))" <<'EOF'
import json
import sys
from pathlib import Path

import yaml

out, train_s, eval_s = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
log = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
config = yaml.safe_load((out / "config.yaml").read_text())
batch = int(config["stages"]["base"]["batch_size"])
last = log[-1]
captions = json.loads((out / "captions.json").read_text())
motion = json.loads((out / "motion.json").read_text())
size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
lines = [
    f"steps {last['step']} (batch {batch}: {last['step'] * batch:,} clips seen), "
    f"{last['steps_per_s']} steps/s, loss {last['loss']:.4f} at the end, "
    f"data wait {last['data_wait']:.1%}",
    f"wall: {train_s} s loading + training, {eval_s} s evaluating",
    "",
    "where a step's time goes (profile/sections.txt):",
    (out / "profile" / "sections.txt").read_text(),
    "eval captions (loss rise with the opposite motion's caption):",
    *(f"  t = {row['timestep']}: {row['gap']:+.1%} (empty prompt {row['empty_gap']:+.1%})"
      for row in captions["timesteps"]),
    "eval motion, text only: direction accuracy "
    + ("n/a" if motion["accuracy"] is None else f"{motion['accuracy']:.0%}"),
    "",
    f"OUT_DIR holds {size / 2**20:.1f} MiB",
]
(out / "summary.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
if size > 60 * 2**20:
    print(f"train_gpu: {out} holds {size / 2**20:.1f} MiB, near the 64 MiB that comes back",
          file=sys.stderr)
EOF
echo "train_gpu: done in $SECONDS s; model in $out/model"
