#!/usr/bin/env bash
# dist/layerlab_<version>_amd64.deb from the bundle in dist/layerlab (installers/build-bundle.sh):
# the app under /opt/layerlab, `layerlab` on the PATH, a menu entry, the icon, AppStream
# metainfo. Depends are what the bundle links from the system, found with ldd and mapped to
# Debian packages with dpkg -S (as dpkg-shlibdeps would), plus what Qt's xcb platform
# plugin needs; Vulkan (libvulkan1, a driver) is only recommended: without it LayerLab runs
# on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIST=${BUNDLE:-$ROOT/dist/layerlab}
OUTDIR=${OUTDIR:-$ROOT/dist}
[ -x "$DIST/layerlab" ] || { echo "no bundle: run installers/build-bundle.sh first" >&2; exit 1; }
VERSION=$(python3 -c "import json;print(json.load(open('$DIST/layerlab-build.json'))['app'])")
ARCH=$(dpkg --print-architecture)
STAGE=$ROOT/build/deb/layerlab
DEB=$OUTDIR/layerlab_${VERSION}_${ARCH}.deb
rm -rf "$STAGE"; mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" "$STAGE/usr/bin"

cp -a "$DIST" "$STAGE/opt/layerlab"
ln -s /opt/layerlab/layerlab "$STAGE/usr/bin/layerlab"
install -Dm644 resources/io.github.layerlab.LayerLab.desktop "$STAGE/usr/share/applications/io.github.layerlab.LayerLab.desktop"
install -Dm644 resources/io.github.layerlab.LayerLab.metainfo.xml "$STAGE/usr/share/metainfo/io.github.layerlab.LayerLab.metainfo.xml"
for s in 16 24 32 48 64 128 256 512; do
  install -Dm644 "resources/icons/layerlab-$s.png" "$STAGE/usr/share/icons/hicolor/${s}x${s}/apps/layerlab.png"
done
install -Dm644 resources/layerlab.svg "$STAGE/usr/share/icons/hicolor/scalable/apps/layerlab.svg"
install -Dm644 installers/debian/copyright "$STAGE/usr/share/doc/layerlab/copyright"

# --- Depends: the system libraries the bundle links, by package ---------------------------
libs=$(find "$DIST" -name '*.so*' -type f -print0 | xargs -0 -n 50 ldd 2>/dev/null \
  | awk '/=> \// {print $3}' | grep -v "^$DIST" | sort -u)
# Qt's xcb plugin opens these at run time (FACTS.md); the bundle does not carry all of them.
for p in libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
  libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxkbcommon-x11-0 libfontconfig1 libegl1 libgl1; do
  echo "$p"
done >"$ROOT/build/deb/packages"
for l in $libs; do
  real=$(readlink -f "$l")
  pkg=$(dpkg -S "$l" 2>/dev/null || dpkg -S "$real" 2>/dev/null || dpkg -S "${l#/usr}" 2>/dev/null || true)
  pkg=${pkg%%:*}
  [ -n "$pkg" ] && echo "${pkg%%,*}" >>"$ROOT/build/deb/packages"
done
GLIBC=$(python3 -c "import json;print(json.load(open('$DIST/layerlab-build.json'))['glibc'])")
depends=$(sort -u "$ROOT/build/deb/packages" | grep -vx "libc6" | grep -v "^libvulkan" | paste -sd, | sed 's/,/, /g')
depends="libc6 (>= $GLIBC), $depends"
SIZE=$(du -sk "$STAGE" --exclude=DEBIAN | cut -f1)

cat >"$STAGE/DEBIAN/control" <<CONTROL
Package: layerlab
Version: $VERSION
Architecture: $ARCH
Maintainer: LayerLab <layerlab@users.noreply.github.com>
Installed-Size: $SIZE
Depends: $depends
Recommends: libvulkan1, mesa-vulkan-drivers
Suggests: systemd
Section: science
Priority: optional
Homepage: https://github.com/layerlab/layerlab
Description: run large language models across every GPU in your home lab
 LayerLab splits a GGUF model's layers over this machine's GPUs and other
 machines' GPUs on the LAN, shows VRAM and tokens per second live, and chats
 privately with the result. llama.cpp is included with its CPU and Vulkan
 backends (any vendor's GPU), and a small demo model, so the first start works
 offline. Without a GPU driver it runs on the processor.
CONTROL
install -m755 installers/debian/postinst installers/debian/prerm installers/debian/postrm "$STAGE/DEBIAN/"

# Files root-owned, no group/other write, whatever the build tree's umask was.
find "$STAGE" -type d -exec chmod 755 {} +
# zstd: dpkg reads it since 1.21.18 (Debian 12, Ubuntu 21.10), the releases whose glibc the
# bundle needs anyway; it packs ~10x faster than xz for about the same size here (the demo
# model and the libraries compress little).
dpkg-deb --root-owner-group -Zzstd -z9 --build "$STAGE" "$DEB" >/dev/null
echo "Depends: $depends"
echo "built $DEB ($(du -h "$DEB" | cut -f1))"
