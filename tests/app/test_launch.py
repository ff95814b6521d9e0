"""The installed launcher, as a person starts it: a real X display (Xvfb), and no display."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(sys.executable).parent / "talk-to-transformers-app"


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    return {**env, "TTT_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1", **extra}


@pytest.mark.skipif(not LAUNCHER.exists(), reason="the app is not installed in this venv "
                    "(pip install -e .)")
@pytest.mark.skipif(shutil.which("xvfb-run") is None,
                    reason="needs Xvfb (installed by `bash installer/setup.sh --dev`)")
def test_launcher_opens_the_window_on_a_real_display(tmp_path, tiny_persona_dir):
    data = tmp_path / "data"
    data.mkdir()
    (data / "settings.json").write_text(json.dumps(
        {"schema_version": 2, "persona": str(tiny_persona_dir), "speak_replies": False}))
    proc = subprocess.run(
        ["xvfb-run", "-a", str(LAUNCHER), "--report-startup", "--quit-when-ready"],
        cwd=tmp_path, env=_env(data), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert "window_shown" in lines and "persona_ready" in lines, proc.stdout + proc.stderr
    # Nothing heavy before the window is on screen: torch loads afterwards, in a worker.
    assert lines["window_shown"].endswith("torch=False")
    assert lines["persona_ready"].endswith("torch=True")


@pytest.mark.skipif(not LAUNCHER.exists(), reason="the app is not installed in this venv")
def test_launcher_without_a_display_says_so(tmp_path):
    proc = subprocess.run([str(LAUNCHER)], cwd=tmp_path, env=_env(tmp_path / "data"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no display found" in proc.stderr and "talk-to-transformers chat" in proc.stderr
