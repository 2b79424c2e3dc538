#!/usr/bin/env bash
# The GPU check in one command: bash benchmarks/gpu_check.sh [--cpu] [--quick] [--simulate-device] [OUT_DIR]
#
# On a lent GPU machine (no mediapipe, PyAV, aiortc, TensorRT; no network) it checks and times
# the engines on torch-cuda and writes OUT_DIR/gpu_check.{json,md} (default $OUT if set, else
# benchmarks/results/gpu_check), printing a short table last. --cpu runs the same checks on the
# CPU with small sizes (gpu_check_cpu.*). --simulate-device hides mediapipe, av and aiortc from
# Python (as on the device) to prove the check needs none of them.
#
# Inputs: the avatar and speech come from a folder prepared on a CPU machine with mediapipe,
# $FACECAST_GPU_CHECK_INPUTS (default out/gpu_check_inputs, ignored by git: name it in the
# device call's `carry`). Made here when missing and mediapipe is importable.
set -uo pipefail
cd "$(dirname "$0")/.."

args=() out="" simulate=0
for arg in "$@"; do
    case "$arg" in
        --cpu | --quick) args+=("$arg") ;;
        --simulate-device) simulate=1 ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
        *) out="$arg" ;;
    esac
done

if [ -n "${PYTHON:-}" ]; then py="$PYTHON"
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export GLOG_minloglevel=2 TF_CPP_MIN_LOG_LEVEL=2
inputs="${FACECAST_GPU_CHECK_INPUTS:-out/gpu_check_inputs}"

if [ "$simulate" = 1 ]; then
    site="$(mktemp -d)"
    trap 'rm -rf "$site"' EXIT
    cat >"$site/sitecustomize.py" <<'EOF'
import sys
for _name in ("mediapipe", "av", "aiortc"):  # absent on the lent GPU machine
    sys.modules[_name] = None
EOF
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

if [ ! -f "$inputs/avatar.npz" ]; then
    echo "gpu_check.sh: no prepared inputs in $inputs; preparing them (needs mediapipe)" >&2
    "$py" -m benchmarks.gpu_check --prepare "$inputs" || {
        echo "gpu_check.sh: run 'python -m benchmarks.gpu_check --prepare $inputs' on the CPU" \
            "checkout and carry $inputs to this machine" >&2
        exit 3
    }
fi

# The checks bound their own time; this is the backstop (results are written after every row).
exec timeout --signal=INT --kill-after=20 "${GPU_CHECK_TIMEOUT_S:-540}" \
    "$py" -m benchmarks.gpu_check "${args[@]}" --inputs "$inputs" ${out:+--out-dir "$out"}
