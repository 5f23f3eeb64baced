#!/usr/bin/env bash
# The GPU check: the sampler tests on CUDA, the main job end to end, then what the method
# costs at full size.
#
#   scripts/gpu_check.sh [--cpu] [OUTDIR]
#
# 1. runs the sampler tests (tests/test_pipeline.py, tests/test_attention.py) with
#    FLIPSKETCH_TEST_DEVICE=cuda, so every tensor and module of theirs lives on the GPU;
# 2. runs `flipsketch animate` with a real drawing end to end, one process per command as a
#    user runs it, on two models: ModelScope T2V 1.7B's full-size architecture with random
#    weights (bf16, saved as a model folder first, so loading is the real code) and the
#    embedded `tiny`. Per model: the inversion cache (the drawing twice: a miss, then a hit),
#    --paper, best-of-K (--samples 3 --keep 1) and `flipsketch batch` on two jobs; each
#    command's --json and outputs are kept in OUTDIR/e2e/MODEL/, the checks and seconds in
#    OUTDIR/e2e/summary.txt (scripts/gpu_check_e2e.py);
# 3. runs benchmarks/bench_sampler.py --arch modelscope-full --steps 25 --frames 10 on CUDA:
#    the same architecture (speed and memory, not quality), text only vs composition only vs
#    the full method, each in a fresh process;
# 4. prints the seconds, the time ratios compose/plain and full/plain and the peak CUDA memory
#    ratio, the full method with one call a step against a call per pass, and writes
#    OUTDIR/gpu_check.log and OUTDIR/bench_sampler.json.
#
# OUTDIR: the argument, else $OUT (the device machine's folder that comes back), else
# runs/gpu-check. Without a CUDA GPU it stops with one line and exit code 1, unless --cpu (or
# GPU_CHECK_DEVICE=cpu) asks for the CPU smoke test that tests/test_gpu_check.py runs: the same
# steps on the CPU, the end-to-end commands on the benchmark's tiny random-weight architecture
# only (2 steps, 3 frames, 64 px; the suite runs the shipped `tiny` itself), the benchmark on
# its tiny model with 3 steps (one aligned) and 4 frames.
#
# Needs: a Python whose torch sees the GPU (a CUDA build), and flipsketch's dependencies:
# diffusers, transformers, accelerate, peft, safetensors, pillow, imageio, pyyaml, typer, rich,
# pluggy, numpy, opencv-python-headless, plus pytest. flipsketch itself need not be installed:
# src/ goes on PYTHONPATH. Python is $PYTHON, else `python`, else `python3`, from PATH.
# Other settings: GPU_CHECK_TESTS (test files or node ids to run instead of the two above),
# GPU_CHECK_REPEATS (benchmark rounds; default 2 on CUDA, 1 on CPU), GPU_CHECK_SKETCH (the
# drawing; default src/flipsketch/examples/fish.png, else ../shared/sketches/fish.png),
# GPU_CHECK_MODELS (where the random-weight model folder goes, about 3.5 GB on CUDA; default a
# temporary folder, deleted at the end).
set -euo pipefail

device="${GPU_CHECK_DEVICE:-cuda}"
out=""
for arg in "$@"; do
    case "$arg" in
        --cpu) device=cpu ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "gpu_check: unknown option '$arg'; use [--cpu] [OUTDIR]" >&2; exit 2 ;;
        *) out="$arg" ;;
    esac
done
out="${out:-${OUT:-}}"
[[ -z "$out" || "$out" == /* ]] || out="$PWD/$out"  # relative to where it was called from

cd "$(dirname "$0")/.."
root="$(pwd)"
out="${out:-$root/runs/gpu-check}"
. scripts/_env.sh

fail() {
    echo "gpu_check: $*" >&2
    exit 1
}

# One interpreter start for both questions (exit 3 without torch, 4 without CUDA), which also
# says what it found; the log starts with those lines once the output folder exists.
status=0
found="$("$python" - "$device" <<'EOF'
import sys

try:
    import torch
except ImportError:
    sys.exit(3)
if sys.argv[1].startswith("cuda") and not torch.cuda.is_available():
    sys.exit(4)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}")
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    print(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB")
EOF
)" || status=$?
case "$status" in
    0) ;;
    3) fail "'$python' cannot import torch; set PYTHON to the Python that has PyTorch" ;;
    127) fail "no Python at '$python'; set PYTHON to the Python that has PyTorch" ;;
    4) fail "no CUDA GPU visible to torch in '$python'; use --cpu for the CPU smoke test" ;;
    *) fail "'$python' could not check for torch and CUDA (exit $status)" ;;
esac
missing="$("$python" - <<'EOF'
import importlib.util

names = ["diffusers", "transformers", "accelerate", "peft", "safetensors", "PIL", "imageio",
         "yaml", "typer", "rich", "pluggy", "numpy", "cv2", "pytest"]
print(" ".join(name for name in names if importlib.util.find_spec(name) is None))
EOF
)"
[[ -z "$missing" ]] || fail "missing Python packages: $missing (pip install -e '.[dev]')"

sketch="${GPU_CHECK_SKETCH:-}"
if [[ -z "$sketch" ]]; then
    for candidate in "$root/src/flipsketch/examples/fish.png" "$root/../shared/sketches/fish.png"
    do
        if [[ -f "$candidate" ]]; then
            sketch="$candidate"
            break
        fi
    done
fi
[[ -n "$sketch" && -f "$sketch" ]] \
    || fail "no drawing for the end-to-end commands; set GPU_CHECK_SKETCH to a PNG drawing"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
exec > >(tee "$out/gpu_check.log") 2>&1

echo "== gpu_check on $device, results in $out"
echo "$found"

echo "== sampler tests on $device ($SECONDS s in)"
read -ra tests <<< "${GPU_CHECK_TESTS:-tests/test_pipeline.py tests/test_attention.py}"
tests_status=passed
FLIPSKETCH_TEST_DEVICE="$device" "$python" -m pytest -p no:cacheprovider "${tests[@]}" \
    || tests_status=FAILED

echo "== end to end: flipsketch animate and batch on $device ($SECONDS s in)"
# A random-weight model folder of the full-size architecture (on the CPU the benchmark's tiny
# one), loaded by `--model FOLDER` like any downloaded model; then the shipped `tiny`.
if [[ "$device" == cuda* ]]; then
    arch=modelscope-full
    quick=()
else
    arch=tiny
    quick=(--steps 2 --frames 3 --size 64)
fi
models_dir="${GPU_CHECK_MODELS:-}"
if [[ -z "$models_dir" ]]; then
    models_dir="$(mktemp -d)"
    trap 'rm -rf "$models_dir"' EXIT
fi
random_model="$models_dir/random-$arch"
e2e_status=passed
"$python" scripts/gpu_check_e2e.py save-model "$arch" "$device" "$random_model" \
    || e2e_status=FAILED

prompt="a fish swimming to the right"
run_e2e() {  # DIR NAME ARGS...: one flipsketch command, its stdout (--json) kept as NAME.json
    local dir="$1" name="$2" start=$SECONDS code=0
    shift 2
    echo "-- $name: flipsketch $*"
    "$python" -m flipsketch "$@" > "$dir/$name.json" || code=$?
    if [[ "$code" == 0 ]]; then
        echo "   done in $((SECONDS - start)) s"
    else
        echo "   FAILED with exit code $code"
        e2e_status=FAILED
    fi
}
# On the CPU the smoke test needs the script's steps, not a second model: the random one only.
e2e_models=("$random_model")
[[ "$device" == cuda* ]] && e2e_models+=(tiny)
for model in "${e2e_models[@]}"; do
    dir="$out/e2e/$(basename "$model")"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$sketch" "$dir/sketch.png"
    printf 'sketch,prompt,seed,paper\nsketch.png,%s,1,\nsketch.png,%s,2,yes\n' \
        "$prompt" "$prompt" > "$dir/jobs.csv"
    common=(--model "$model" --device "$device" "${quick[@]}")
    # Its own inversion cache, empty: the first run inverts, the second (another seed) reuses.
    export FLIPSKETCH_CACHE="$dir/cache"
    run_e2e "$dir" cache-1 animate "$dir/sketch.png" "$prompt" "${common[@]}" \
        -o "$dir/cache-1.gif" --json
    run_e2e "$dir" cache-2 animate "$dir/sketch.png" "$prompt" "${common[@]}" --seed 1 \
        -o "$dir/cache-2.gif" --json
    run_e2e "$dir" paper animate "$dir/sketch.png" "$prompt" "${common[@]}" --paper \
        -o "$dir/paper.gif" --json
    run_e2e "$dir" best-of-3 animate "$dir/sketch.png" "$prompt" "${common[@]}" \
        --samples 3 --keep 1 -o "$dir/best.gif" --json
    run_e2e "$dir" batch batch "$dir/jobs.csv" -o "$dir/batch" "${common[@]}" --json
    unset FLIPSKETCH_CACHE
done
"$python" scripts/gpu_check_e2e.py summary "$out/e2e" "${e2e_models[@]##*/}" \
    > "$out/e2e/summary.txt" || e2e_status=FAILED
cat "$out/e2e/summary.txt"

echo "== benchmark on $device ($SECONDS s in)"
if [[ "$device" == cuda* ]]; then  # a warm-up round: kernel loading is not the method's cost
    bench=(--arch modelscope-full --steps 25 --frames 10 --repeats "${GPU_CHECK_REPEATS:-2}"
           --warmup 1)
else
    bench=(--arch tiny --steps 3 --frames 4 --repeats "${GPU_CHECK_REPEATS:-1}" --threads 2
           --warmup 0)
fi
"$python" benchmarks/bench_sampler.py "${bench[@]}" --device "$device" \
    --no-align-quality --json "$out/bench_sampler.json"

echo "== summary ($SECONDS s in)"
"$python" - "$out/bench_sampler.json" "$tests_status" <<'EOF'
import json
import sys

s = json.load(open(sys.argv[1]))
print(f"sampler tests on {s['device']}: {sys.argv[2]}")
print(f"{s['model']} ({s['dtype']}), T = {s['steps']}, M = {s['frames']}: "
      f"plain {s['plain_s']} s, compose {s['compose_s']} s, full {s['full_s']} s")
print(f"compose ratio {s['compose_ratio']}, full ratio {s['full_ratio']}; memory ratio "
      f"compose {s['compose_mem_ratio']}, full {s['full_mem_ratio']} (peaks {s['plain_peak_mib']}"
      f" / {s['compose_peak_mib']} / {s['full_peak_mib']} MiB, {s['memory']})")
print(f"one call a step (reference and joint passes): {s['full_one_call_s']} s against "
      f"{s['full_s']} s with a call each, ratio {s['one_call_ratio']}")
EOF
echo "end-to-end commands on $device: $e2e_status (e2e/summary.txt)"
[[ "$tests_status" == passed ]] || fail "sampler tests failed on $device (see $out/gpu_check.log)"
[[ "$e2e_status" == passed ]] \
    || fail "end-to-end commands failed on $device (see $out/gpu_check.log)"
echo "gpu_check: done"
