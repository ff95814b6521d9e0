"""Open each window and dialog and save a screenshot of it in docs/screenshots/.

    xvfb-run -a .venv/bin/python scripts/screenshots.py            # a real X display
    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshots.py

The main window shows a real conversation: the script asks the starter persona (SmolLM2, on
this machine's CPU) a question and waits for its reply; ``--persona`` picks another. Everything
runs in a temporary data folder, so the user's own conversations are never shown or touched;
the converted starter model is reused from the user's data folder when it is there.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = ["Hi! Can you suggest a good book for a long train ride?",
             "What is the capital of France?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--persona", default="starter")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from engine import paths

    user_cache = paths.data_dir() / "cache"
    tmp = Path(tempfile.mkdtemp(prefix="ttt-shots-"))
    # ~0.5 GB a run; rmtree removes the cache link below, not what it points to.
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    os.environ["TTT_DATA_DIR"] = str(tmp)
    if user_cache.is_dir():
        (tmp / "cache").symlink_to(user_cache.resolve())

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from engine.pipeline import events as ev
    from engine.settings import Settings

    _app = QApplication.instance() or QApplication([])  # kept alive for the whole run

    def wait(condition, timeout_s: float = 300) -> None:
        loop = QEventLoop()
        timer = QTimer()
        timer.timeout.connect(lambda: loop.quit() if condition() else None)
        timer.start(50)
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()
        timer.stop()
        if not condition():
            raise SystemExit("timed out waiting for the window")

    def settle(ms: int = 300) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def shot(widget, name: str) -> None:
        settle()
        path = args.out / f"{name}.png"
        widget.grab().save(str(path))
        print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    window = MainWindow(Settings(persona=args.persona, speak_replies=True))
    done: list = []
    window.controller.pipeline_event.connect(
        lambda e: done.append(e) if e.type == ev.TURN_DONE else None)
    window.resize(1100, 720)
    window.show()
    window.start()
    wait(lambda: window.controller.states["chat"] in ("ready", "failed")
         and window.controller.states["voice"] != "loading")
    for i, question in enumerate(QUESTIONS):
        window.send(question)
        wait(lambda n=i + 1: len(done) >= n)
    window.input.setPlainText("And what is it famous for?")
    shot(window, "main-window")

    window.open_models()
    shot(window.models_dialog, "models-dialog")
    window.models_dialog.close()
    window.open_voices()
    shot(window.voices_dialog, "voices-dialog")
    window.voices_dialog.close()
    window.open_settings()
    shot(window.settings_dialog, "settings-dialog")
    window.settings_dialog.reject()

    window.open_training()
    window.training_dialog._berkeley()  # the recipe filled in, as a person would start
    shot(window.training_dialog, "training-dialog")
    window.training_dialog.close()

    window._show_first_run()
    shot(window, "first-run")
    window.close()


if __name__ == "__main__":
    main()
