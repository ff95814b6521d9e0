"""The conversation as text: user and assistant apart, timestamps, selectable and copyable.

A reply streams in piece by piece: pieces are inserted at the end of the document (no re-render
of the whole conversation per token), so a long conversation stays smooth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from PySide6.QtGui import QColor, QFont, QPalette, QTextBlockFormat, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

ROLE_LABELS = {"user": "You", "assistant": "Assistant"}


@dataclass
class Message:
    """One shown turn."""

    role: str  # "user" or "assistant"
    text: str
    created: float  # Unix time
    status: str = "done"  # "done", "streaming", "cut", "failed"
    speaker: str | None = None  # who said it, when known (a stored reply's persona)


class ChatView(QTextBrowser):
    """Read-only view of one conversation."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setAccessibleName("Conversation")
        self.setPlaceholderText("Type below, or hold the talk button and speak.")
        self.messages: list[Message] = []
        self.assistant_name = ROLE_LABELS["assistant"]

    # -- formats ------------------------------------------------------------------------------
    def _body_format(self, role: str) -> QTextBlockFormat:
        fmt = QTextBlockFormat()
        palette = self.palette()
        if role == "user":
            tint = QColor(palette.color(QPalette.ColorRole.Highlight))
            tint.setAlpha(40)  # a light wash of the accent colour, in light and dark themes
            fmt.setBackground(tint)
            fmt.setLeftMargin(60)
            fmt.setRightMargin(6)
        else:
            fmt.setBackground(palette.color(QPalette.ColorRole.AlternateBase))
            fmt.setLeftMargin(6)
            fmt.setRightMargin(60)
        return fmt

    def _header(self, message: Message) -> tuple[QTextBlockFormat, QTextCharFormat, str]:
        fmt = self._body_format(message.role)
        fmt.setTopMargin(10)
        chars = QTextCharFormat()
        chars.setFontWeight(QFont.Weight.Bold)
        chars.setForeground(self.palette().color(QPalette.ColorRole.PlaceholderText))
        name = "You" if message.role == "user" else (message.speaker or self.assistant_name)
        stamp = time.strftime("%H:%M", time.localtime(message.created))
        return fmt, chars, f"{name} · {stamp}"

    # -- building -----------------------------------------------------------------------------
    def clear_messages(self) -> None:
        """Empty the view."""
        self.messages = []
        self.clear()

    def set_messages(self, messages: list[Message]) -> None:
        """Show a whole conversation."""
        self.clear_messages()
        for message in messages:
            self.add_message(message)

    def add_message(self, message: Message) -> None:
        """Append a finished (or starting, for a streamed reply) turn."""
        self.messages.append(message)
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        header_fmt, header_chars, header = self._header(message)
        if len(self.messages) == 1:
            cursor.setBlockFormat(header_fmt)
        else:
            cursor.insertBlock(header_fmt)
        cursor.insertText(header, header_chars)
        cursor.insertBlock(self._body_format(message.role), QTextCharFormat())
        self._insert_text(cursor, message.text, message.role)
        if message.status == "cut":
            self._insert_note(cursor, " [interrupted]")
        elif message.status == "failed" and not message.text:
            self._insert_note(cursor, "(no reply)")
        self._scroll_to_end()

    def begin_reply(self) -> None:
        """Start an assistant message that pieces will be appended to."""
        self.add_message(Message("assistant", "", time.time(), "streaming"))

    @property
    def streaming(self) -> bool:
        """Whether the last message is a reply still being written."""
        return bool(self.messages) and self.messages[-1].status == "streaming"

    def append_reply(self, piece: str) -> None:
        """Add a piece to the streaming reply (starting one if needed)."""
        if not self.streaming:
            self.begin_reply()
        message = self.messages[-1]
        if not message.text:
            piece = piece.lstrip()
        message.text += piece
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        self._insert_text(cursor, piece, "assistant")
        self._scroll_to_end()

    def end_reply(self, text: str | None = None, *, cut: bool = False,
                  failed: bool = False) -> None:
        """Finish the streaming reply; ``text`` replaces it when it differs (a spoken cut)."""
        if not self.streaming:
            return
        message = self.messages[-1]
        message.status = "failed" if failed else ("cut" if cut else "done")
        if text is not None and text.strip() != message.text.strip():
            message.text = text.strip()
            self.set_messages(list(self.messages))  # rare: re-render once
            return
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if cut:
            self._insert_note(cursor, " [interrupted]")
        elif failed and not message.text:
            self._insert_note(cursor, "(no reply)")

    def _insert_text(self, cursor: QTextCursor, text: str, role: str) -> None:
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if i:
                cursor.insertBlock(self._body_format(role), QTextCharFormat())
            cursor.insertText(line, QTextCharFormat())

    def _insert_note(self, cursor: QTextCursor, note: str) -> None:
        fmt = QTextCharFormat()
        fmt.setFontItalic(True)
        fmt.setForeground(self.palette().color(QPalette.ColorRole.PlaceholderText))
        cursor.insertText(note, fmt)

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())
