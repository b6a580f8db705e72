#!/usr/bin/env bash
# Build llama.cpp's own llama-server from the llama.cpp source vendored in the pinned
# llama-cpp-python sdist, so bench/parallel_streams.py compares against the same llama.cpp
# LayerLab runs. Into build/llama-server/ (about 10 minutes on 2 cores, at nice 19). Also
# what the single-stream baseline engine needs, into build/bench-baseline/site/.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
OUT="build/llama-server"
SRC="$OUT/src"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"
# `parallel_streams.py --single` runs the engine from before batching (a git archive of
# 5ad7fc5^), which streamed through sse-starlette; LayerLab itself no longer needs it
BASE_SITE="build/bench-baseline/site"
if [ ! -d "$BASE_SITE/sse_starlette" ]; then
  "$PY" -m pip install -q --no-deps --target "$BASE_SITE" "sse-starlette>=2.0,<4"
fi
if [ -x "$OUT/bin/llama-server" ]; then
  echo "llama-server already built: $OUT/bin/llama-server"
  exit 0
fi
if [ ! -d "$SRC/vendor/llama.cpp" ]; then
  # pip's cache has it when llama-cpp-python was installed from source here
  "$PY" -m pip download --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$OUT"
  mkdir -p "$SRC"
  tar xzf "$OUT/llama_cpp_python-$VERSION.tar.gz" -C "$SRC" --strip-components=1
fi
JOBS="${JOBS:-$(nproc)}"
nice -n 19 cmake -S "$SRC/vendor/llama.cpp" -B "$OUT/cmake" \
  -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON -DGGML_RPC=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
nice -n 19 cmake --build "$OUT/cmake" --target llama-server -j "$JOBS"
mkdir -p "$OUT/bin"
cp "$OUT/cmake/bin/llama-server" "$OUT/bin/"
cp "$OUT"/cmake/bin/*.so* "$OUT/bin/" 2>/dev/null || true
echo "built: $OUT/bin/llama-server"
if lscpu | grep -qi amx; then
  echo "this CPU has AMX: run llama-server with --no-repack (FACTS.md)"
fi
