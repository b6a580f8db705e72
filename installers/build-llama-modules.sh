#!/usr/bin/env bash
# llama.cpp for the installers: llama-cpp-python 0.3.36 built with every backend as a
# loadable module (FACTS.md "Backends as modules"): all CPU variants (ggml picks the one the
# processor runs best at start), Vulkan (any vendor's driver) and RPC; CUDA only when
# LAYERLAB_CUDA=1 (the Windows installer's optional component, built on CI).
# The development build in .venv stays as it is; this one lands as a wheel in
# build/llama-modules/wheel/ and is what the bundle carries. ~12 min on 2 cores: run it niced.
#
#   installers/build-llama-modules.sh            # Linux: CPU variants + Vulkan + RPC
#   LAYERLAB_CUDA=1 installers/build-llama-modules.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/build/llama-modules
LLAMA_VERSION=0.3.36
PY=${PYTHON:-python3}
mkdir -p "$OUT"
log() { printf '\033[1m[llama-modules]\033[0m %s\n' "$*" >&2; }

# --- Vulkan headers ----------------------------------------------------------------------
# This ggml needs Vulkan headers 1.4.x; Debian 12 ships 1.3.239 (too old). Use, in order:
# VULKAN_SDK (LunarG's SDK, as on CI), the system's when new enough, else Debian 13's header
# packages unpacked under build/ (nothing is installed on the system; the loader stays the
# system's libvulkan.so.1, which the bundle must not carry).
vk_header_minor() { sed -n 's/^#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION(0, \([0-9]*\), \([0-9]*\).*/\1\2/p' "$1/vulkan/vulkan_core.h" 2>/dev/null; }
VK_INC="" VK_LIB="" SPIRV_DIR=""
if [ -n "${VULKAN_SDK:-}" ]; then
  VK_INC=$VULKAN_SDK/include
  VK_LIB=$(ls "$VULKAN_SDK"/lib/libvulkan.so.1 2>/dev/null | head -1 || true)
  SPIRV_DIR=$(dirname "$(find "$VULKAN_SDK" -name SPIRV-HeadersConfig.cmake | head -1)" 2>/dev/null || true)
  [ -x "$VULKAN_SDK/bin/glslc" ] && export PATH="$VULKAN_SDK/bin:$PATH"
elif [ "$(vk_header_minor /usr/include || echo 0)" -ge 14 ] 2>/dev/null; then
  VK_INC=/usr/include
else
  VK=$OUT/vulkan-headers
  if [ ! -f "$VK/usr/include/vulkan/vulkan.hpp" ]; then
    log "fetching Vulkan 1.4 headers from Debian 13's packages (unpacked under build/, not installed)"
    A=$OUT/apt-trixie; mkdir -p "$A"/{lists/partial,archives/partial,parts}
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$A/sources.list"
    APTOPT=(-o Dir::Etc::sourcelist="$A/sources.list" -o Dir::Etc::sourceparts="$A/parts"
      -o Dir::State::Lists="$A/lists" -o Dir::Cache::Archives="$A/archives" -o Dir::State::status=/dev/null
      -o APT::Sandbox::User=root)
    apt-get "${APTOPT[@]}" -qq update
    (cd "$A" && apt-get "${APTOPT[@]}" -qq download libvulkan-dev spirv-headers)
    mkdir -p "$VK"
    for d in "$A"/*.deb; do dpkg-deb -x "$d" "$VK"; done
  fi
  VK_INC=$VK/usr/include
  SPIRV_DIR=$VK/usr/share/cmake/SPIRV-Headers
fi
[ -n "$VK_LIB" ] || VK_LIB=$(ls /usr/lib/x86_64-linux-gnu/libvulkan.so.1 /usr/lib64/libvulkan.so.1 2>/dev/null | head -1 || true)
[ -n "$VK_LIB" ] || { log "no Vulkan loader (libvulkan.so.1): apt-get install libvulkan1"; exit 1; }
command -v glslc >/dev/null || { log "no glslc (Vulkan shader compiler): apt-get install glslc"; exit 1; }

CMAKE_ARGS="-DGGML_RPC=on -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_NATIVE=OFF"
CMAKE_ARGS+=" -DGGML_VULKAN=ON -DCMAKE_INSTALL_BINDIR=llama_cpp/lib"
CMAKE_ARGS+=" -DVulkan_INCLUDE_DIR=$VK_INC -DVulkan_LIBRARY=$VK_LIB"
# ggml-vulkan also wants the SPIR-V headers (packaged beside Vulkan's in Debian 13 and the SDK).
[ -n "$SPIRV_DIR" ] && CMAKE_ARGS+=" -DSPIRV-Headers_DIR=$SPIRV_DIR"
[ "${LAYERLAB_CUDA:-0}" = 1 ] && CMAKE_ARGS+=" -DGGML_CUDA=ON"
# The modules find each other and libggml-base through $ORIGIN, never the build tree.
CMAKE_ARGS+=" -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON -DCMAKE_INSTALL_RPATH=\$ORIGIN"

# A finished build for exactly these arguments is kept: re-running is instant.
key=$(printf '%s %s' "$LLAMA_VERSION" "$CMAKE_ARGS" | sha256sum | cut -c1-12)
if [ -f "$OUT/wheel/.key" ] && [ "$(cat "$OUT/wheel/.key")" = "$key" ] && ls "$OUT"/wheel/*.whl >/dev/null 2>&1; then
  log "already built: $(ls "$OUT"/wheel/*.whl)"; exit 0
fi
[ -x "$OUT/venv/bin/python" ] || "$PY" -m venv "$OUT/venv"
"$OUT/venv/bin/python" -m pip install -q --upgrade pip
rm -rf "$OUT/wheel"; mkdir -p "$OUT/wheel"
log "building llama-cpp-python $LLAMA_VERSION with: $CMAKE_ARGS"
# --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and would hand back the dev build.
CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  "$OUT/venv/bin/python" -m pip wheel --no-cache-dir --no-deps -w "$OUT/wheel" \
  "llama-cpp-python==$LLAMA_VERSION"
echo "$key" >"$OUT/wheel/.key"
log "built: $(ls "$OUT"/wheel/*.whl)"
