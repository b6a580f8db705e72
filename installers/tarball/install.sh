#!/bin/sh
# LayerLab for one person, without root: installs into ~/.local/opt/layerlab with a menu
# entry, an icon and `layerlab` in ~/.local/bin. Run from the unpacked folder:
#   ./install.sh              install (or update)
#   ./install.sh --uninstall  remove the program; your models, chats and settings stay
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
PREFIX=$HOME/.local/opt/layerlab
BIN=$HOME/.local/bin
APPS=$DATA/applications
ICONS=$DATA/icons/hicolor
DESKTOP=io.github.layerlab.LayerLab.desktop

uninstall() {
  "$PREFIX/layerlab" worker --uninstall-service >/dev/null 2>&1 || true
  rm -rf "$PREFIX"
  rm -f "$BIN/layerlab" "$APPS/$DESKTOP"
  for d in "$ICONS"/*/apps; do rm -f "$d/layerlab.png" "$d/layerlab.svg"; done
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$APPS" || true
  echo "LayerLab is removed. Your models, chats and settings are kept in ~/.config/layerlab,"
  echo "~/.local/share/layerlab and ~/.cache/layerlab; delete those too if you want."
}

if [ "${1:-}" = "--uninstall" ]; then uninstall; exit 0; fi

mkdir -p "$PREFIX.new" "$BIN" "$APPS"
cp -a "$HERE/layerlab/." "$PREFIX.new/"
rm -rf "$PREFIX"; mv "$PREFIX.new" "$PREFIX"
ln -sf "$PREFIX/layerlab" "$BIN/layerlab"
for s in 16 24 32 48 64 128 256 512; do
  mkdir -p "$ICONS/${s}x${s}/apps"
  cp "$HERE/share/icons/layerlab-$s.png" "$ICONS/${s}x${s}/apps/layerlab.png"
done
# The menu entry starts this copy by its full path (~/.local/bin may not be on the PATH yet).
sed -e "s|^Exec=layerlab|Exec=$PREFIX/layerlab|" -e "s|^TryExec=layerlab|TryExec=$PREFIX/layerlab|" \
  "$HERE/share/$DESKTOP" >"$APPS/$DESKTOP"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$APPS" || true
echo "LayerLab is installed in $PREFIX. Start it from the menu, or run: layerlab"
case ":$PATH:" in *":$BIN:"*) ;; *) echo "(Add $BIN to your PATH to run 'layerlab' from a terminal.)";; esac
"$PREFIX/layerlab" --version
