"""The conversation list: search, new, rename, delete; emits ids, never touches the store."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class ConversationList(QWidget):
    """Lists conversations (newest first) and says what the person wants done with them."""

    selected = Signal(int)  # conversation id
    new_requested = Signal()
    rename_requested = Signal(int)
    delete_requested = Signal(int)
    search_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.search_edit = QLineEdit(self)
        self.search_edit.setPlaceholderText("Search conversations")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setAccessibleName("Search conversations")
        self.search_edit.textChanged.connect(self.search_changed)
        self.list = QListWidget(self)
        self.list.setAccessibleName("Conversations")
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.currentItemChanged.connect(self._current_changed)
        self.new_button = QPushButton("&New", self)
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.rename_button = QPushButton("Re&name", self)
        self.delete_button = QPushButton("&Delete", self)
        self.new_button.clicked.connect(self.new_requested)
        self.rename_button.clicked.connect(lambda: self._emit_for_current(self.rename_requested))
        self.delete_button.clicked.connect(lambda: self._emit_for_current(self.delete_requested))
        buttons = QHBoxLayout()
        for button in (self.new_button, self.rename_button, self.delete_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search_edit)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self._updating = False

    def set_conversations(self, conversations: list, current: int | None) -> None:
        """Show ``conversations`` (store headers) and highlight ``current``."""
        self._updating = True
        try:
            self.list.clear()
            for conv in conversations:
                title = conv.title or "New conversation"
                when = time.strftime("%d %b %H:%M", time.localtime(conv.updated))
                item = QListWidgetItem(f"{title}\n{when} · {conv.persona}")
                item.setData(Qt.ItemDataRole.UserRole, conv.id)
                item.setToolTip(title)
                self.list.addItem(item)
                if conv.id == current:
                    self.list.setCurrentItem(item)
        finally:
            self._updating = False
        has_current = self.current_id() is not None
        self.rename_button.setEnabled(has_current)
        self.delete_button.setEnabled(has_current)

    def current_id(self) -> int | None:
        """Id of the highlighted conversation."""
        item = self.list.currentItem()
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def ids(self) -> list[int]:
        """Ids shown, top to bottom."""
        return [int(self.list.item(i).data(Qt.ItemDataRole.UserRole))
                for i in range(self.list.count())]

    def _current_changed(self, item: QListWidgetItem | None, _previous: object) -> None:
        if item is not None and not self._updating:
            self.selected.emit(int(item.data(Qt.ItemDataRole.UserRole)))
        self.rename_button.setEnabled(item is not None)
        self.delete_button.setEnabled(item is not None)

    def _emit_for_current(self, signal) -> None:
        current = self.current_id()
        if current is not None:
            signal.emit(current)
