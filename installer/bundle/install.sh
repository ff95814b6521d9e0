#!/usr/bin/env bash
# Run from the unpacked bundle folder: adds Talk To Transformers to the application menu and
# `talk-to-transformers` to ~/.local/bin (for the current user; nothing outside your home).
#
#   bash install.sh            # install
#   bash install.sh --remove   # take both out again (your conversations and voices stay)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
share="${XDG_DATA_HOME:-$HOME/.local/share}"
entry="$share/applications/talk-to-transformers.desktop"
icon="$share/icons/hicolor/scalable/apps/talk-to-transformers.svg"
link="$HOME/.local/bin/talk-to-transformers"

if [ "${1:-}" = "--remove" ]; then
  # Only what points at this bundle (a source or pipx install may own the same names).
  if grep -qF "Exec=\"$here/talk-to-transformers\"" "$entry" 2>/dev/null; then
    rm -f "$entry" "$icon"
  fi
  if [ "$(readlink "$link" 2>/dev/null)" = "$here/talk-to-transformers" ]; then
    rm -f "$link"
  fi
  echo "Removed this bundle's menu entry and command link."
  exit 0
fi
exe="$here/talk-to-transformers"
[ -x "$exe" ] || { echo "error: $exe not found; run this from the bundle folder." >&2; exit 1; }
if [ -e "$link" ] || [ -L "$link" ]; then
  if [ "$(readlink "$link" 2>/dev/null)" != "$exe" ]; then
    echo "error: $link already exists (another install?); remove it first." >&2
    exit 1
  fi
fi
mkdir -p "$(dirname "$entry")" "$(dirname "$icon")" "$(dirname "$link")"
cp "$here/talk-to-transformers.svg" "$icon"
sed "s|^Exec=.*|Exec=\"$exe\"|" "$here/talk-to-transformers.desktop" > "$entry"
ln -sfn "$exe" "$link"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$(dirname "$entry")" || true
echo "Installed: $entry and $link"
