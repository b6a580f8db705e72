#!/usr/bin/env bash
# Every Linux installer this machine can build, in order: the bundle (with llama.cpp's
# backend modules), the .deb, the tarball. The AppImage is built on CI
# (.github/workflows/release.yml) with installers/appimage/build-appimage.sh.
#   nice -n 19 installers/build-linux.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source installers/system-packages.sh
need_packages "${BUILD_PACKAGES[@]}"
installers/build-bundle.sh
installers/build-deb.sh
installers/build-tarball.sh
ls -la dist/*.deb dist/*.tar.gz
