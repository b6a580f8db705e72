#!/usr/bin/env bash
# dist/layerlab-<version>-linux-x86_64.tar.gz: the bundle plus a per-user install.sh, for
# distributions without dpkg. Needs dist/layerlab (installers/build-bundle.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=${BUNDLE:-dist/layerlab}
OUTDIR=${OUTDIR:-dist}
[ -x "$DIST/layerlab" ] || { echo "no bundle: run installers/build-bundle.sh first" >&2; exit 1; }
VERSION=$(python3 -c "import json;print(json.load(open('$DIST/layerlab-build.json'))['app'])")
NAME=layerlab-$VERSION-linux-$(uname -m)
STAGE=build/tarball/$NAME
rm -rf build/tarball; mkdir -p "$STAGE/share/icons"
cp -a "$DIST" "$STAGE/layerlab"
cp installers/tarball/install.sh "$STAGE/"
cp resources/io.github.layerlab.LayerLab.desktop "$STAGE/share/"
cp resources/icons/layerlab-*.png "$STAGE/share/icons/"
tar -C build/tarball --owner=0 --group=0 -czf "$OUTDIR/$NAME.tar.gz" "$NAME"
echo "built $OUTDIR/$NAME.tar.gz ($(du -h "$OUTDIR/$NAME.tar.gz" | cut -f1))"
