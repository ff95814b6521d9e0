"""Start-up time of the window: process start → window on screen, and → persona ready.

Launches ``python -m app --report-startup --quit-when-ready`` N times and timestamps the lines it
prints as they arrive (so the figures include the interpreter's own start). Also reports whether
torch had been imported when the window appeared (it must not be: goal ≤ 1 s to the window).

    .venv/bin/python benchmarks/startup.py [--runs 5] [--persona starter] [--xvfb]

Runs offscreen (QT_QPA_PLATFORM=offscreen) unless --xvfb (a real X display via xvfb-run).
The data folder is a temporary one seeded with nothing but settings, except that the converted
starter model cache is shared through --cache-from (default: the user's data folder) so "ready"
measures a normal start, not the one-time GGUF conversion.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(args: argparse.Namespace, data: Path) -> dict[str, float | str]:
    env = {**os.environ, "TTT_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "app", "--report-startup", "--quit-when-ready"]
    if args.xvfb:
        command = ["xvfb-run", "-a", *command]
    else:
        env["QT_QPA_PLATFORM"] = "offscreen"
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: dict[str, float | str] = {}
    for line in proc.stdout:
        name, _, rest = line.strip().partition(" ")
        if name in ("window_shown", "persona_ready", "persona_failed"):
            seen[name] = time.perf_counter() - started
            seen[name + "_in_process"] = float(rest.split()[0])
            if name == "window_shown" and "torch=" in rest:
                seen["torch_before_window"] = rest.split("torch=")[1]
    proc.wait(timeout=600)
    seen["exit"] = time.perf_counter() - started
    if proc.returncode != 0 or "window_shown" not in seen:
        raise SystemExit(f"the app failed (exit {proc.returncode}): {proc.stderr.read()}")
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--persona", default="starter")
    parser.add_argument("--xvfb", action="store_true", help="use a real X display (xvfb-run)")
    parser.add_argument("--cache-from", type=Path, default=None,
                        help="data folder whose cache/ (converted models) is reused")
    args = parser.parse_args()
    if args.xvfb and not shutil.which("xvfb-run"):
        raise SystemExit("xvfb-run is not installed (apt install xvfb xauth)")
    sys.path.insert(0, str(ROOT))
    from engine import paths

    cache_from = args.cache_from or paths.data_dir()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        (data / "settings.json").write_text(json.dumps(
            {"schema_version": 2, "persona": args.persona, "speak_replies": False}))
        if (cache_from / "cache").is_dir():
            (data / "cache").symlink_to((cache_from / "cache").resolve())
        for i in range(args.runs):
            result = one_run(args, data)
            runs.append(result)
            print(f"run {i + 1}: window {result['window_shown']:.3f} s, persona "
                  f"{'ready' if 'persona_ready' in result else 'FAILED'} "
                  f"{result.get('persona_ready', result.get('persona_failed', 0.0)):.3f} s, "
                  f"torch imported before the window: {result.get('torch_before_window')}",
                  flush=True)
    shown = [r["window_shown"] for r in runs]
    ready = [r["persona_ready"] for r in runs if "persona_ready" in r]
    display = "xvfb" if args.xvfb else "offscreen"
    print(f"\nprocess start → window shown ({display}, {len(runs)} runs): median "
          f"{statistics.median(shown):.3f} s, min {min(shown):.3f}, max {max(shown):.3f} "
          f"(goal ≤ 1 s)")
    if ready:
        print(f"process start → persona {args.persona!r} ready: median "
              f"{statistics.median(ready):.3f} s, min {min(ready):.3f}, max {max(ready):.3f}")


if __name__ == "__main__":
    main()
