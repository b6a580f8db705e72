#!/usr/bin/env bash
# dist/LayerLab-<version>-x86_64.AppImage from the bundle (installers/build-bundle.sh).
# Needs appimagetool (with its runtime), which no registry this project reaches carries: the
# CI workflow downloads it (APPIMAGETOOL=path/to/appimagetool).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIST=dist/layerlab
TOOL=${APPIMAGETOOL:-appimagetool}
[ -x "$DIST/layerlab" ] || { echo "no bundle: run installers/build-bundle.sh first" >&2; exit 1; }
VERSION=$(python3 -c "import json;print(json.load(open('$DIST/layerlab-build.json'))['app'])")
APPDIR=build/LayerLab.AppDir
rm -rf "$APPDIR"; mkdir -p "$APPDIR/usr/share/metainfo" "$APPDIR/usr/share/applications"
cp -a "$DIST" "$APPDIR/usr/layerlab"
cp installers/appimage/AppRun "$APPDIR/AppRun"; chmod 755 "$APPDIR/AppRun"
cp resources/io.github.layerlab.LayerLab.desktop "$APPDIR/"
cp resources/io.github.layerlab.LayerLab.desktop "$APPDIR/usr/share/applications/"
cp resources/io.github.layerlab.LayerLab.metainfo.xml "$APPDIR/usr/share/metainfo/"
cp resources/icons/layerlab-256.png "$APPDIR/layerlab.png"
ln -sf layerlab.png "$APPDIR/.DirIcon"
ARCH=x86_64 "$TOOL" --no-appstream "$APPDIR" "dist/LayerLab-$VERSION-x86_64.AppImage"
echo "built dist/LayerLab-$VERSION-x86_64.AppImage"
