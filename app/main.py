"""Start the window fast: Qt first, the window on screen, then the models in the background.

Nothing heavy (torch, transformers, Whisper) is imported before the window is shown; the
controller loads those on workers after the first paint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import cast

from app import bundle

STARTED = time.perf_counter()  # as early as this module allows: the startup benchmark reads it


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("win32", "darwin"))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    frozen = bundle.frozen()  # the bundle: one program for both
    parser = argparse.ArgumentParser(
        prog="talk-to-transformers" if frozen else "talk-to-transformers-app",
        description="Talk To Transformers: the desktop window. For the terminal, use "
                    "`talk-to-transformers chat` or `talk`"
                    + (" (all commands: `talk-to-transformers -h`)." if not frozen else
                       "; commands: chat, talk, listen, transcribe, devices, models, voices, "
                       "serve, token, train (`talk-to-transformers chat -h` for one's options)."))
    parser.add_argument("--report-startup", action="store_true",
                        help="print when the window is shown and when the persona is ready "
                             "(seconds since the process started); used by "
                             "benchmarks/startup.py")
    parser.add_argument("--quit-when-ready", action="store_true",
                        help="quit as soon as the persona is ready (or failed)")
    parser.add_argument("--self-check", action="store_true",
                        help="check this install offline (window, chat, store, speech, audio, "
                             "bundled models) in a temporary data folder, print a line per "
                             "check and exit: 0 when all pass")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Open the window; returns the exit status."""
    args = _parse(argv)
    if args.self_check:
        from app.self_check import run

        return run()
    if not _has_display():
        print("error: no display found (DISPLAY / WAYLAND_DISPLAY are not set), so the window "
              "cannot open.\nhint: run it in a desktop session; on a server use "
              "`talk-to-transformers chat` (terminal) or set QT_QPA_PLATFORM=offscreen.",
              file=sys.stderr)
        return 2
    from PySide6.QtCore import QObject, QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from engine import paths
    from engine import settings as settings_file

    # instance() is typed as the base QCoreApplication; an existing one is a QApplication (a
    # widget needs one), so it is cast for the QGuiApplication methods below.
    app = cast(QApplication, QApplication.instance() or QApplication(sys.argv[:1]))
    from app.gc_guard import GuiThreadCollector

    collector = GuiThreadCollector(app)  # noqa: F841 (lives as long as the app)
    app.setApplicationName("Talk To Transformers")
    app.setDesktopFileName("talk-to-transformers")
    icon = paths.resources_dir() / "icons" / "talk-to-transformers.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    settings, warning = settings_file.load()
    window = MainWindow(settings, settings_warning=warning)

    def report(what: str) -> None:
        if args.report_startup:
            heavy = "torch" in sys.modules  # must stay False until the window is shown
            print(f"{what} {time.perf_counter() - STARTED:.3f} torch={heavy}", flush=True)

    class _Exposed(QObject):
        def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
            from PySide6.QtCore import QEvent

            # The first paint of the window: it is on screen (or in the offscreen buffer).
            if watched is window and event.type() == QEvent.Type.Paint:
                window.removeEventFilter(self)
                report("window_shown")
                QTimer.singleShot(0, window.start)  # models load after the first paint
            return False

    exposed = _Exposed()
    window.installEventFilter(exposed)

    def chat_state(part: str, state: str, text: str) -> None:
        if part == "chat" and state in ("ready", "failed"):
            report(f"persona_{state}")
            if args.quit_when_ready:
                window.close()

    window.controller.part_state.connect(chat_state)
    window.show()
    return app.exec()
