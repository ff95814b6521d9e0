#!/usr/bin/env bash
# Builds the one-folder bundle dist/talk-to-transformers/ with PyInstaller (the window and the
# command line in one program, CPU torch or whatever torch .venv has, the starter persona,
# Whisper tiny.en and the speaker encoder), self-checks it, and packs it as a .tar.gz.
#
#   bash installer/setup.sh && bash installer/build-bundle.sh
#
# Then, on the target machine: tar xzf talk-to-transformers-*.tar.gz &&
#   bash talk-to-transformers/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "error: .venv not found; run 'bash installer/setup.sh' first." >&2
  exit 1
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "pyinstaller>=6.10,<7"
started=$(date +%s)
.venv/bin/python -m PyInstaller --noconfirm --log-level WARN --distpath dist \
  --workpath build/pyinstaller installer/bundle/talk-to-transformers.spec
bundle=dist/talk-to-transformers
cp installer/bundle/install.sh resources/talk-to-transformers.desktop \
  resources/icons/talk-to-transformers.svg "$bundle/"
echo "Built $bundle ($(du -sh "$bundle" | cut -f1)) in $(( $(date +%s) - started )) s."
echo "+ $bundle/talk-to-transformers --self-check"
"$bundle/talk-to-transformers" --self-check
# The real starter persona answering a typed turn, as a new user's first message would.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "+ $bundle/talk-to-transformers chat -m 'What is the capital of France?'  (fresh data folder)"
TTT_DATA_DIR="$scratch" HF_HUB_OFFLINE=1 "$bundle/talk-to-transformers" chat \
  -m "What is the capital of France?" | tee "$scratch/reply.txt"
grep -q "^bot> ." "$scratch/reply.txt" || { echo "error: the bundle gave no reply." >&2; exit 1; }
version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('talk-to-transformers'))")
archive="dist/talk-to-transformers-$version-linux-$(uname -m).tar.gz"
if [ "${BUNDLE_ARCHIVE:-1}" = 1 ]; then
  tar czf "$archive" -C dist talk-to-transformers
  echo "Packed $archive ($(du -sh "$archive" | cut -f1))."
fi
