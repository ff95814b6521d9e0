"""Space as the hold-to-talk key: an application event filter with a release debounce."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QWidget

# A held key repeats as release+press pairs; after about a second Qt stops flagging them as
# auto-repeats. A release followed by a press within this time is such a pair, not a release.
RELEASE_DEBOUNCE_MS = 40


class TalkKey(QObject):
    """Space held in ``window`` (where ``applies()`` says it means talk) is the talk key.

    ``on_press()`` runs when it goes down; ``on_release(released_at)`` once it is really up,
    with the perf_counter() of the key-up (the turn's latency counts from there). Installed on
    the application from construction until :meth:`detach`.
    """

    def __init__(self, window: QWidget, *, applies: Callable[[], bool],
                 on_press: Callable[[], None], on_release: Callable[[float], None]):
        super().__init__(window)
        self._window = window
        self._applies = applies
        self._on_press = on_press
        self._on_release = on_release
        self.down = False
        self._released_at = 0.0  # perf_counter() of a release waiting out the debounce
        self._release_timer = QTimer(self)
        self._release_timer.setSingleShot(True)
        self._release_timer.setInterval(RELEASE_DEBOUNCE_MS)
        self._release_timer.timeout.connect(self._released)
        _application().installEventFilter(self)

    def detach(self) -> None:
        """Stop watching the keyboard (the window is closing)."""
        _application().removeEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """Qt: take Space's presses and releases where it is the talk key."""
        kind = event.type()
        if kind == QEvent.Type.WindowDeactivate and watched is self._window and self.down:
            # Alt+Tab with Space held: the key-up goes elsewhere, so end the recording here.
            self._release_timer.stop()
            self._released_at = time.perf_counter()
            self._released()
            return False
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            return False
        # A key press or release is a QKeyEvent, and PySide6 hands the filter that subclass;
        # the stubs only know the QEvent of the signature.
        key_event = cast(QKeyEvent, event)
        if key_event.key() != Qt.Key.Key_Space or not self._window.isActiveWindow():
            return False
        # While held, the key stays the talk key wherever the focus went (a click into the
        # text box must not leave the recording running until the next Space).
        if not self.down and not self._applies():
            return False
        if key_event.isAutoRepeat():
            return True
        if kind == QEvent.Type.KeyPress:
            if self._release_timer.isActive():  # an unflagged auto-repeat pair: still held
                self._release_timer.stop()
            elif not self.down:
                self.down = True
                self._on_press()
        elif kind == QEvent.Type.KeyRelease and self.down:
            self._released_at = time.perf_counter()  # the turn's latency counts from here
            self._release_timer.start()
        return True

    def _released(self) -> None:
        """The talk key is really up (no press followed its release)."""
        if not self.down:
            return
        self.down = False
        self._on_release(self._released_at)


def _application() -> QApplication:
    app = QApplication.instance()
    assert app is not None  # typed Optional, but no widget exists without the application
    return cast(QApplication, app)
