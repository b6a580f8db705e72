# Sourced by installers/test-installers.sh and installers/bench-installed.sh: a clean Debian
# root (debootstrap --variant=minbase, from Debian's own packages) to install the .deb into,
# fresh for every run, with its own unprivileged person, and a display from the host's Xvfb.
# Needs root, debootstrap, xvfb, xdotool, imagemagick on the host.
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SUITE=${SUITE:-bookworm}
PRISTINE=$ROOT/build/clean-root.tar
CR=$ROOT/build/clean-root-run
DISPLAY_NUM=${DISPLAY_NUM:-77}
PERSON_HOME=/home/person

cr_log() { printf '\033[1m[clean-root]\033[0m %s\n' "$*" >&2; }

cr_make_pristine() {
  [ -f "$PRISTINE" ] && return
  cr_log "debootstrap $SUITE (minbase) from Debian's packages"
  rm -rf "$ROOT/build/clean-root"
  debootstrap --variant=minbase "$SUITE" "$ROOT/build/clean-root" http://deb.debian.org/debian >/dev/null
  tar -C "$ROOT/build/clean-root" -cf "$PRISTINE" .
  rm -rf "$ROOT/build/clean-root"
}

cr_in() { chroot "$CR" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 "$@"; }
# As the person (uid 1000), with the host's display.
cr_person() {
  chroot --userspec=1000:1000 "$CR" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin \
    HOME=$PERSON_HOME USER=person LANG=C.UTF-8 DISPLAY=":$DISPLAY_NUM" XDG_RUNTIME_DIR=/tmp/run-person "$@"
}

cr_up() {
  cr_make_pristine
  cr_down
  rm -rf "$CR"; mkdir -p "$CR"
  tar -C "$CR" -xf "$PRISTINE"
  cp /etc/resolv.conf "$CR/etc/resolv.conf"
  mount -t proc proc "$CR/proc"
  mount --rbind /sys "$CR/sys"; mount --make-rslave "$CR/sys"
  mount --rbind /dev "$CR/dev"; mount --make-rslave "$CR/dev"
  mkdir -p "$CR/tmp/.X11-unix"
  mount --bind /tmp/.X11-unix "$CR/tmp/.X11-unix"
  cr_in useradd -m -u 1000 -s /bin/bash person
  mkdir -p "$CR/tmp/run-person"; chown 1000:1000 "$CR/tmp/run-person"; chmod 700 "$CR/tmp/run-person"
  if [ ! -S "/tmp/.X11-unix/X$DISPLAY_NUM" ]; then
    Xvfb ":$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp -ac >/dev/null 2>&1 &
    XVFB_PID=$!
    for _ in $(seq 50); do [ -S "/tmp/.X11-unix/X$DISPLAY_NUM" ] && break; sleep 0.1; done
  fi
}

cr_down() {
  [ -n "${XVFB_PID:-}" ] && kill "$XVFB_PID" 2>/dev/null && wait "$XVFB_PID" 2>/dev/null
  XVFB_PID=""
  for m in tmp/.X11-unix dev sys proc; do
    mountpoint -q "$CR/$m" 2>/dev/null && umount -R "$CR/$m" 2>/dev/null || umount -lR "$CR/$m" 2>/dev/null || true
  done
}

# Every file of the root outside the places a system or a person writes as it runs.
cr_files() {
  (cd "$CR" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp \
    -o -path ./run -o -path ./var/lib/apt -o -path ./var/lib/dpkg -o -path ./var/cache \
    -o -path ./var/log -o -path ".$PERSON_HOME" -o -path ./root \) -prune -o -print | sort)
}

cr_install_deb() {
  local deb=$1
  cp "$deb" "$CR/tmp/layerlab.deb"
  cr_in apt-get -qq update
  # As a person's software centre would, but without Recommends: no Vulkan driver in here.
  cr_in DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/layerlab.deb >/dev/null
}
