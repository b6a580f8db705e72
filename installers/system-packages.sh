# Sourced by the installer scripts: installs the Debian packages they need that are missing
# (with sudo when not root), as scripts/setup.sh does for the app.
need_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "[installers] installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}
# Building: llama.cpp's Vulkan backend (shader compiler, loader), the bundle's checks, the .deb.
BUILD_PACKAGES=(build-essential cmake glslc libvulkan1 patchelf
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0
  libxkbcommon-x11-0 libwayland-cursor0 libwayland-egl1)  # the last two: Qt's Wayland plugin
# Checking: Mesa's CPU Vulkan driver, NSIS, a clean Debian root, a display to look at.
TEST_PACKAGES=(mesa-vulkan-drivers nsis debootstrap xvfb xdotool imagemagick bc)
