#!/usr/bin/env bash
# Adds Talk To Transformers to the desktop's application menu (for the current user):
# the .desktop entry, pointing at this checkout's .venv, and the icon.
#
#   bash installer/install-desktop-entry.sh            # install
#   bash installer/install-desktop-entry.sh --remove   # take it out again
set -euo pipefail
cd "$(dirname "$0")/.."

apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/scalable/apps"
entry="$apps/talk-to-transformers.desktop"
icon="$icons/talk-to-transformers.svg"

if [ "${1:-}" = "--remove" ]; then
  rm -f "$entry" "$icon"
  echo "Removed the desktop entry."
  exit 0
fi
exe="$PWD/.venv/bin/talk-to-transformers-app"
if [ ! -x "$exe" ]; then
  echo "error: $exe not found; run 'bash installer/setup.sh' first." >&2
  exit 1
fi
mkdir -p "$apps" "$icons"
cp resources/icons/talk-to-transformers.svg "$icon"
# Exec gets the absolute path of this checkout's launcher (quoted for paths with spaces).
sed "s|^Exec=.*|Exec=\"$exe\"|" resources/talk-to-transformers.desktop > "$entry"
command -v desktop-file-validate >/dev/null && desktop-file-validate "$entry" || true
command -v update-desktop-database >/dev/null && update-desktop-database -q "$apps" || true
echo "Installed: $entry"
