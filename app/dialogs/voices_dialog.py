"""The Voices dialog: the enrolled voices (preview, rename, delete) and adding a new one.

Adding lives in :class:`app.dialogs.enroll_panel.EnrollPanel`. Listing, renaming and deleting
read and write a few small files, so they run on the GUI thread; previewing synthesises and
plays, so it runs on a worker. Every failure is a message in the banner, never a dialog.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.dialogs.enroll_panel import COUNTDOWN_S, EnrollPanel
from app.widgets.banner import Banner, describe
from app.workers import WorkerPool
from engine.errors import TalkError
from engine.voices import store

PREVIEW_TEXT = "Hello! This is how I sound. Shall we have a chat?"
PULL_HINT = "Pull it: Models → Pocket TTS English (or a smaller Pocket TTS model)."
COLUMNS = ("Name", "Sample check", "Similarity", "Flagged")

Preview = Callable[[store.Voice, str], None]  # synthesises ``text`` in ``voice`` and plays it


class VoicesDialog(QDialog):
    """Enrolled voices and enrolment; non-modal.

    Args:
        workers: the app's worker pool (recording, file reading, checks and previews run there).
        microphone_factory: makes the microphone to record from (default: the system's default
            input, opened on a worker).
        preview: ``(voice, text) -> None`` that speaks ``text`` in ``voice`` and returns when it
            has played; None when no voice model is available.
        countdown_s: seconds of 3-2-1 before a recording starts (0 in tests).
        parent: the owning window.

    """

    voices_changed = Signal()  # a voice was added, renamed or deleted
    paired = Signal(str)  # a persona's id: it now speaks in another voice

    def __init__(self, workers: WorkerPool, *,
                 microphone_factory: Callable[[], Any] | None = None,
                 preview: Preview | None = None, countdown_s: int = COUNTDOWN_S,
                 prepare: Callable[[Any], str | None] | None = None,
                 play: Callable[[store.Voice], None] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Voices")
        self.setModal(False)
        self.workers = workers
        self.preview = preview
        self.prepare = prepare  # computes a new voice's state for the loaded voice model
        self.play = play  # plays a voice's stored sample
        self._playing = False
        self._previewing = False
        self._voices: dict[str, store.Voice] = {}
        self.current_persona: Any = None  # the window's persona (maybe not installed): first
        self.banner = Banner(self)
        self.enroll_panel = EnrollPanel(workers, microphone_factory=microphone_factory,
                                        countdown_s=countdown_s, parent=self)
        self.enroll_panel.enrolled.connect(self._enrolled)
        self.enroll_panel.message.connect(self._show_message)
        self._build()
        self.refresh()
        self.resize(680, 760)
        self.name_edit.setFocus()

    # The panel's widgets, named on the dialog for the tests and the window.
    name_edit = property(lambda self: self.enroll_panel.name_edit)
    seconds_spin = property(lambda self: self.enroll_panel.seconds_spin)
    record_button = property(lambda self: self.enroll_panel.record_button)
    stop_button = property(lambda self: self.enroll_panel.stop_button)
    import_button = property(lambda self: self.enroll_panel.import_button)
    verdict_view = property(lambda self: self.enroll_panel.verdict_view)
    keep_anyway_button = property(lambda self: self.enroll_panel.keep_anyway_button)
    level_meter = property(lambda self: self.enroll_panel.level_meter)
    countdown_label = property(lambda self: self.enroll_panel.countdown_label)
    passage_label = property(lambda self: self.enroll_panel.passage_label)

    @property
    def microphone_factory(self) -> Callable[[], Any]:
        """What recordings are made from."""
        return self.enroll_panel.microphone_factory

    @microphone_factory.setter
    def microphone_factory(self, factory: Callable[[], Any]) -> None:
        self.enroll_panel.microphone_factory = factory

    @property
    def countdown_s(self) -> int:
        """Seconds of countdown before recording."""
        return self.enroll_panel.countdown_s

    @countdown_s.setter
    def countdown_s(self, seconds: int) -> None:
        self.enroll_panel.countdown_s = seconds

    def _build(self) -> None:
        self.voices_table = QTableWidget(0, len(COLUMNS), self)
        self.voices_table.setHorizontalHeaderLabels(COLUMNS)
        self.voices_table.setAccessibleName("Enrolled voices")
        self.voices_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.voices_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.voices_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.voices_table.verticalHeader().hide()
        self.voices_table.setWordWrap(False)
        header = self.voices_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for column in (2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.voices_table.itemSelectionChanged.connect(self._update_buttons)
        self.list_widget = self.voices_table

        self.preview_button = QPushButton("&Preview", self)
        self.preview_button.setToolTip("Hear a sentence spoken in the selected voice")
        self.preview_button.clicked.connect(self.preview_selected)
        self.play_button = QPushButton("Pla&y sample", self)
        self.play_button.setToolTip("Hear the selected voice's sample, as it was enrolled")
        self.play_button.clicked.connect(self.play_selected)
        self.rename_button = QPushButton("Re&name…", self)
        self.rename_button.clicked.connect(self.rename_selected)
        self.delete_button = QPushButton("&Delete…", self)
        self.delete_button.clicked.connect(self.delete_selected)
        self.pair_button = QPushButton("&Use for persona…", self)
        self.pair_button.setToolTip("Make a persona speak in the selected voice")
        self.pair_button.clicked.connect(self.pair_selected)
        actions = QHBoxLayout()
        for button in (self.play_button, self.preview_button, self.pair_button,
                       self.rename_button, self.delete_button):
            button.setAutoDefault(False)
            actions.addWidget(button)
        actions.addStretch(1)

        listed = QGroupBox("Your voices", self)
        listed_layout = QVBoxLayout(listed)
        listed_layout.addWidget(self.voices_table)
        listed_layout.addLayout(actions)

        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(listed, 1)
        layout.addWidget(self.enroll_panel, 0)
        layout.addWidget(close)
        QWidget.setTabOrder(self.voices_table, self.play_button)
        QWidget.setTabOrder(self.play_button, self.preview_button)
        QWidget.setTabOrder(self.preview_button, self.pair_button)
        QWidget.setTabOrder(self.pair_button, self.rename_button)
        QWidget.setTabOrder(self.rename_button, self.delete_button)
        QWidget.setTabOrder(self.delete_button, self.name_edit)

    # --- the list ---------------------------------------------------------------------------

    def refresh(self, select: str | None = None) -> None:
        """Re-read the voices; select the voice with id ``select`` (else keep the selection)."""
        keep = select
        if not keep:
            current = self.selected_voice()
            keep = current.id if current else None
        voices, damaged = store.list_voices()
        self._voices = {voice.id: voice for voice in voices}
        table = self.voices_table
        table.clearSelection()
        table.setRowCount(len(voices))
        for row, voice in enumerate(voices):
            summary = voice.verdict.get("summary") or "not checked"
            similarity = "" if voice.similarity is None else f"{float(voice.similarity):.2f}"
            cells = (voice.name, summary, similarity, "⚑ flagged" if voice.flagged else "")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, voice.id)
                item.setToolTip(text if column != 3 else
                                "Kept although it failed a check: " + summary)
                table.setItem(row, column, item)
            if voice.id == keep:
                table.selectRow(row)
        if damaged:
            count = "One voice folder is" if len(damaged) == 1 else \
                f"{len(damaged)} voice folders are"
            details = " ".join(describe(err) for err in damaged)
            self.banner.show_message(f"{count} damaged and left out: {details}", "warning",
                                     title="Voices")
        self._update_buttons()

    def selected_voice(self) -> store.Voice | None:
        """The selected voice, if any."""
        rows = self.voices_table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.voices_table.item(rows[0].row(), 0)
        return self._voices.get(item.data(Qt.ItemDataRole.UserRole)) if item else None

    def select_voice(self, name: str) -> None:
        """Select the row of the voice called ``name`` (or with that id)."""
        for row in range(self.voices_table.rowCount()):
            item = self.voices_table.item(row, 0)
            assert item is not None  # refresh fills every cell of every row
            if name in (item.text(), item.data(Qt.ItemDataRole.UserRole)):
                self.voices_table.selectRow(row)
                return

    def _update_buttons(self) -> None:
        chosen = self.selected_voice() is not None
        self.preview_button.setEnabled(chosen and not self._previewing)
        self.play_button.setEnabled(chosen and self.play is not None and not self._playing)
        self.rename_button.setEnabled(chosen)
        self.delete_button.setEnabled(chosen)
        self.pair_button.setEnabled(chosen)

    def _enrolled(self, voice: store.Voice) -> None:
        self.banner.clear("enroll")  # "type a name first" and the like no longer apply
        self.refresh(select=voice.id)
        self.voices_changed.emit()
        if self.prepare is not None:
            self.banner.show_message(f"Preparing {voice.name} for the voice model…", "info")
            self.workers.run(self.prepare, voice, name="prepare voice",
                             on_done=lambda model: self._prepared(voice, model),
                             on_error=lambda err: self._prepare_failed(voice, err))

    def _prepared(self, voice: store.Voice, model: str | None) -> None:
        self.banner.show_message(
            f"{voice.name} is ready to speak ({model})." if model else
            f"{voice.name} is saved; it is prepared when the voice model first speaks in it.",
            "info")

    def _prepare_failed(self, voice: store.Voice, err: TalkError) -> None:
        self.banner.show_message(err, title=f"{voice.name} is saved but cannot speak yet")

    def _show_message(self, message: TalkError | str, level: str) -> None:
        self.banner.show_message(message, level, topic="enroll")  # cleared once one is saved

    # --- actions on the selected voice --------------------------------------------------------

    def rename_selected(self) -> None:
        """Ask for a new name and rename the selected voice."""
        voice = self.selected_voice()
        if voice is None:
            return
        new_name, ok = QInputDialog.getText(self, "Rename voice", f"New name for {voice.name}:",
                                            text=voice.name)
        if not ok or new_name.strip() == voice.name:
            return
        try:
            renamed = store.rename(voice.id, new_name)
        except TalkError as err:
            self.banner.show_message(err, title="Rename")
            return
        self.refresh(select=renamed.id)
        self.voices_changed.emit()

    def pair_selected(self) -> None:
        """Ask which persona should speak in the selected voice, and pair them."""
        voice = self.selected_voice()
        if voice is None:
            return
        from engine.models.registry import list_personas
        from engine.voices.pairing import pair, voice_for

        personas, _broken = list_personas()
        current = self.current_persona
        if current is not None and all(p.id != current.id for p in personas):
            personas.append(current)  # opened from a folder that is not installed
        if not personas:
            self.banner.show_message("There is no persona to pair yet: pull, add or train one "
                                     "in Models first.", "warning", title="Use for persona")
            return
        speaks = [voice_for(p) for p in personas]  # each reads the pairings file: once
        labels = [p.label + (f"  (speaks in {v})" if v else "")
                  for p, v in zip(personas, speaks, strict=True)]
        first = next((i for i, p in enumerate(personas)
                      if current is not None and p.id == current.id), 0)
        label, ok = QInputDialog.getItem(self, "Use for persona",
                                         f"Which persona should speak in {voice.name}?",
                                         labels, first, False)
        if not ok:
            return
        persona = personas[labels.index(label)]
        try:
            pair(persona.id, voice.name)
        except (TalkError, OSError) as err:
            self.banner.show_message(err if isinstance(err, TalkError) else
                                     f"Could not save the pairing: {err}", title="Use for persona")
            return
        self.banner.show_message(f"{persona.label} now speaks in {voice.name}.", "info")
        self.paired.emit(persona.id)

    def delete_selected(self) -> None:
        """Delete the selected voice after asking."""
        voice = self.selected_voice()
        if voice is None:
            return
        answer = QMessageBox.question(
            self, "Delete voice",
            f"Delete the voice {voice.name}? Its sample and files are removed for good.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            store.delete(voice.id)
        except (TalkError, OSError) as err:
            self.banner.show_message(err if isinstance(err, TalkError) else
                                     f"Could not delete {voice.name}: {err}", title="Delete")
            return
        self.refresh()
        self.voices_changed.emit()

    def play_selected(self) -> None:
        """Play the selected voice's stored sample (on a worker)."""
        voice = self.selected_voice()
        if voice is None or self.play is None or self._playing:
            return
        self._playing = True
        self._update_buttons()
        self.play_button.setText("Playing…")

        def over() -> None:
            self._playing = False
            self.play_button.setText("Pla&y sample")
            self._update_buttons()

        self.workers.run(self.play, voice, name="play sample",
                         on_done=lambda _: self.banner.show_message(
                             f"Played the sample of {voice.name}.", "info"),
                         on_error=lambda err: self.banner.show_message(err, title="Play sample"),
                         on_finally=over)

    def preview_selected(self) -> None:
        """Speak a sentence in the selected voice (on a worker)."""
        voice = self.selected_voice()
        if voice is None or self._previewing:
            return
        if self.preview is None:
            self.banner.show_message(
                TalkError("Voices cannot be previewed until the voice model is downloaded.",
                          hint=PULL_HINT, code="model_missing"), title="Preview")
            return
        self._previewing = True
        self._update_buttons()
        self.preview_button.setText("Playing…")
        self.workers.run(self.preview, voice, PREVIEW_TEXT, name="preview",
                         on_done=lambda _: self._previewed(voice),
                         on_error=self._preview_failed, on_finally=self._preview_over)

    def _previewed(self, voice: store.Voice) -> None:
        self.refresh()  # the preview may have scored the clone's similarity
        self.banner.show_message(f"Played a preview of {voice.name}.", "info")

    def _preview_failed(self, err: TalkError) -> None:
        if err.code == "model_missing":  # the engine's hint names the CLI; here it is a menu
            err = TalkError(err.message, hint=PULL_HINT, code=err.code)
        self.banner.show_message(err, title="Preview")

    def _preview_over(self) -> None:
        self._previewing = False
        self.preview_button.setText("&Preview")
        self._update_buttons()

    # --- closing ------------------------------------------------------------------------------

    def done(self, result: int) -> None:
        """Closing stops a countdown or recording (the microphone is released, nothing kept)."""
        self.enroll_panel.abandon()
        self.banner.clear(level="info")  # "Played…", "Saved…": news only while it is open
        super().done(result)  # the window's close button and Escape come here too
