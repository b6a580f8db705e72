#!/usr/bin/env bash
# Renders resources/icons/ (PNG 16-512, layerlab.ico) from layerlab.svg. Needs rsvg-convert
# (librsvg2-bin) and icotool (icoutils). The outputs are committed; run this after editing
# the SVG.
set -euo pipefail
cd "$(dirname "$0")"
for s in 16 24 32 48 64 128 256 512; do
  rsvg-convert -w "$s" -h "$s" layerlab.svg -o "icons/layerlab-$s.png"
done
# 256 px is stored as PNG inside the .ico (Windows Vista and later read it), the rest as BMP.
icotool -c -o icons/layerlab.ico icons/layerlab-{16,24,32,48,64,128}.png -r icons/layerlab-256.png
# The window's own icon travels inside the Python package.
mkdir -p ../app/layerlab/resources
cp icons/layerlab-256.png ../app/layerlab/resources/layerlab.png
