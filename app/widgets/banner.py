"""A non-modal message strip: errors and notices shown in the window, never a traceback dialog.

Messages come from ``TalkError`` (message + hint) or plain text. The strip stays until the person
closes it, a newer message replaces it, or its cause is gone: a message shown with a ``topic``
("chat", "asr"...) is cleared by ``clear(topic)`` when that part works again.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from engine.errors import TalkError

_STYLES = {
    "error": "background:#fde2e1; color:#5f1412; border:1px solid #e8a19d;",
    "warning": "background:#fff4d6; color:#4d3800; border:1px solid #e6c66f;",
    "info": "background:#e3effd; color:#0f3057; border:1px solid #9dbfe8;",
}


def describe(error: TalkError | BaseException | str) -> str:
    """One readable paragraph for a person: the message, then the hint."""
    if isinstance(error, TalkError):
        return f"{error.message} {error.hint}" if error.hint else error.message
    return str(error)


class Banner(QFrame):
    """The strip; hidden until there is something to say."""

    closed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("banner")
        self._label = QLabel(self)
        self._label.setWordWrap(True)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(self)
        close.setText("✕")
        close.setAccessibleName("Dismiss message")
        close.setAutoRaise(True)
        close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self._label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.level = "info"
        self.topic: str | None = None  # what the message shown is about, if it says
        self.hide()

    def show_message(self, error: TalkError | BaseException | str, level: str = "error",
                     title: str | None = None, topic: str | None = None) -> None:
        """Show ``error`` (a TalkError, an exception or text); ``title`` names the stage.

        ``topic`` names what the message is about, so :meth:`clear` can take it away once that
        is fixed.
        """
        text = describe(error)
        self.level, self.topic = level, topic
        self._label.setText(f"<b>{title}:</b> {_escape(text)}" if title else _escape(text))
        self.setStyleSheet(f"QFrame#banner {{{_STYLES.get(level, _STYLES['info'])}"
                           "border-radius:4px;} QLabel{background:transparent;}")
        self.show()

    def text(self) -> str:
        """What the strip says now (plain text), '' when hidden."""
        return self._label.text() if self.isVisible() else ""

    def plain_text(self) -> str:
        """What the strip says, even when its window is not shown (tests)."""
        return self._label.text() if not self.isHidden() else ""

    def dismiss(self) -> None:
        """Hide the strip."""
        self.hide()
        self.closed.emit()

    def clear(self, *topics: str, level: str | None = None) -> None:
        """Hide the message if its cause is gone: it is about one of ``topics``, or of ``level``."""
        if self.isHidden():
            return
        if (self.topic is not None and self.topic in topics) or (
                level is not None and self.level == level):
            self.dismiss()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
