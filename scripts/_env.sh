# Sourced by scripts/gpu_check.sh and scripts/train_gpu.sh from the repository root: the
# checkout's src/ on PYTHONPATH (flipsketch need not be installed), no hub, unbuffered output,
# OpenMP waiting passively (shared cores), and $python: $PYTHON, else `python`, else `python3`.
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
if [[ -n "${PYTHON:-}" ]]; then
    python="$PYTHON"
elif command -v python >/dev/null 2>&1; then
    python=python
else
    python=python3
fi
