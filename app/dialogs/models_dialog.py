"""The "Models and personas" dialog: what the catalogue offers, what is here, pull / add / remove.

Rows are the catalogue's personas, voice models and Whisper sizes (speech recognition), then
installed personas the catalogue does not know (added folders, trained ones). Status comes from
the file system (``availability``), never from loading a model. Pulls, removals and additions
run in workers; every failure appears in the banner at the top and the dialog keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.pull_task import PullPanel, add_persona_folder, window_pull_error
from app.widgets.banner import Banner
from app.workers import Worker, WorkerPool
from engine import paths
from engine.errors import TalkError
from engine.models.catalogue import CatalogueEntry, asr_catalogue, catalogue, tts_catalogue
from engine.models.persona import Persona

COLUMNS = ("Name", "Kind", "Size (MB)", "Status", "Description")
KIND_LABELS = {"bundled": "bundled", "hub": "download", "recipe": "trained locally",
               "tts": "voice model"}
SPEECH_KIND = "speech model"  # the Kind column of every Whisper row, the bundled one too
ID_ROLE = Qt.ItemDataRole.UserRole


@dataclass
class Row:
    """One line of the table: a catalogue entry, an installed persona, or both."""

    id: str
    name: str
    kind: str
    size_mb: float
    status: str
    description: str
    entry: CatalogueEntry | None = None
    persona: Persona | None = None
    ready: bool = False

    @property
    def pullable(self) -> bool:
        """A catalogue download that is not here yet."""
        return (self.entry is not None and self.entry.kind in ("hub", "tts", "asr")
                and not self.ready)

    @property
    def speech_model(self) -> bool:
        """A pulled Whisper size (removed from the Hub cache, not from the personas)."""
        return self.entry is not None and self.entry.kind == "asr"

    @property
    def bundled(self) -> bool:
        """Ships with the app (cannot be removed)."""
        bundled_root = (paths.resources_dir() / "personas").resolve()
        return self.persona is not None and self.persona.folder.parent == bundled_root


def build_rows() -> tuple[list[Row], list[TalkError]]:
    """The table's rows, and the errors of persona folders that could not be read."""
    from engine.install.manager import folder_size
    from engine.models.availability import persona_status
    from engine.models.registry import list_personas
    from engine.tts.runtime import voice_model_status

    personas, errors = list_personas()
    by_id = {p.id: p for p in personas}
    rows: list[Row] = []
    for entry in catalogue() + tts_catalogue():
        persona = by_id.pop(entry.id, None)
        if entry.kind == "tts":
            status = voice_model_status(entry)
            ready = status == "ready"  # built-in voices only: pull again once cloning is allowed
        elif persona is not None:
            ready, status = persona_status(persona)
        else:
            ready = False
            status = {"recipe": "made by the training module",
                      "bundled": "not installed"}.get(entry.kind, "not downloaded")
        rows.append(Row(entry.id, entry.name, KIND_LABELS.get(entry.kind, entry.kind),
                        entry.size_mb, status, entry.description, entry, persona, ready))
    from engine.install import asr_pull

    for entry in asr_catalogue():
        status = asr_pull.status(entry.id)
        rows.append(Row(entry.id, entry.name, SPEECH_KIND, entry.size_mb, status,
                        entry.description, entry, None, asr_pull.is_ready(entry.id)))
    for persona in by_id.values():  # added folders, trained personas
        ready, status = persona_status(persona)
        rows.append(Row(persona.id, persona.label, "local", folder_size(persona.folder) / 1e6,
                        status, persona.description, None, persona, ready))
    return rows, list(errors)


class ModelsDialog(QDialog):
    """Non-modal dialog listing personas and voice models, with Pull, Remove and Add folder."""

    personas_changed = Signal()  # after a pull, an addition or a removal succeeded

    def __init__(self, workers: WorkerPool, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models and personas")
        self.setModal(False)
        self.resize(860, 440)
        self.workers = workers
        self.rows: list[Row] = []
        self._removing = False
        self._adding = False
        self._sharing = False  # an export or import is running
        self._share_job = 0  # the latest export or import; an earlier one's end is not its end

        self.banner = Banner(self)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAccessibleName("Personas, voice models and speech models")
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        for column in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)

        self.pull_panel = PullPanel(workers, self)
        self.progress_bar = self.pull_panel.progress_bar
        self.cancel_button = self.pull_panel.cancel_button
        self.pull_panel.succeeded.connect(self._pulled)
        self.pull_panel.failed.connect(self._pull_failed)
        self.pull_panel.busy_changed.connect(self._update_buttons)

        self.disk_label = QLabel(self)
        self.disk_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pull_button = QPushButton("&Pull", self)
        self.pull_button.setToolTip("Download the selected model from the Hugging Face Hub")
        self.pull_button.clicked.connect(self.pull_selected)
        self.remove_button = QPushButton("&Remove", self)
        self.remove_button.setToolTip("Delete the selected persona or speech model from this "
                                      "computer")
        self.remove_button.clicked.connect(self.remove_selected)
        self.add_button = QPushButton("&Add folder…", self)
        self.add_button.setToolTip("Add a persona folder or a transformers checkpoint folder")
        self.add_button.clicked.connect(self.add_folder)
        self.export_button = QPushButton("&Export…", self)
        self.export_button.setToolTip("Write the selected persona and its voice to one zip file "
                                      "to give to someone")
        self.export_button.clicked.connect(self.export_selected)
        self.import_button = QPushButton("&Import…", self)
        self.import_button.setToolTip("Add a persona (and its voice) from a zip file made by "
                                      "Export")
        self.import_button.clicked.connect(self.import_archive)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)

        buttons = QHBoxLayout()
        for button in (self.pull_button, self.remove_button, self.add_button,
                       self.export_button, self.import_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.pull_panel)
        layout.addWidget(self.disk_label)
        layout.addLayout(buttons)
        self.setTabOrder(self.table, self.pull_button)
        self.setTabOrder(self.pull_button, self.remove_button)
        self.setTabOrder(self.remove_button, self.add_button)
        self.setTabOrder(self.add_button, self.export_button)
        self.setTabOrder(self.export_button, self.import_button)
        self.refresh()

    # -- the table ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the catalogue, the installed personas and the disk usage; keep the selection."""
        selected = self.selected_row()
        try:
            self.rows, errors = build_rows()
        except TalkError as err:
            self.banner.show_message(err, title="Listing personas")
            return
        self.table.setRowCount(len(self.rows))
        for index, row in enumerate(self.rows):
            size = f"{row.size_mb:,.0f}" if row.size_mb >= 1 else f"{row.size_mb:.1f}"
            cells = (row.name, row.kind, size, row.status, row.description)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(ID_ROLE, row.id)
                item.setToolTip(row.description if column == 4 else text)
                if column == 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(index, column, item)
        if errors:
            self.banner.show_message("; ".join(e.message for e in errors), level="warning",
                                     title="Some persona folders could not be read")
        self._show_disk_usage()
        if selected is not None:
            self.select(selected.id)
        self._update_buttons()

    def _show_disk_usage(self) -> None:
        from engine.models.availability import disk_usage

        usage = disk_usage()
        self.disk_label.setText(
            f"Disk used: {usage.total / 1e6:,.0f} MB (downloaded models {usage.hub / 1e6:,.0f} MB,"
            f" your personas {usage.personas / 1e6:,.0f} MB, converted models"
            f" {usage.converted / 1e6:,.0f} MB)")

    def select(self, entry_id: str) -> bool:
        """Select the row of ``entry_id`` (a catalogue or persona id); False if there is none."""
        for index, row in enumerate(self.rows):
            if row.id == entry_id:
                self.table.selectRow(index)
                return True
        return False

    def selected_row(self) -> Row | None:
        """The row selected now, if any."""
        ranges = self.table.selectedRanges()
        if not ranges or ranges[0].topRow() >= len(self.rows):
            return None
        return self.rows[ranges[0].topRow()]

    def _update_buttons(self) -> None:
        row = self.selected_row()
        self.pull_button.setEnabled(row is not None and row.pullable and not self.pull_panel.busy)
        removable = row is not None and (row.persona is not None
                                         or (row.speech_model and row.ready))
        self.remove_button.setEnabled(removable and not self._removing)
        self.add_button.setEnabled(not self._adding)
        self.export_button.setEnabled(row is not None and row.persona is not None
                                      and not self._sharing)
        self.import_button.setEnabled(not self._sharing)

    # -- pull --------------------------------------------------------------------------------

    def pull_selected(self) -> None:
        """Download the selected catalogue entry."""
        row = self.selected_row()
        if row is None or row.entry is None or not row.pullable:
            return
        if self.pull_panel.start(row.entry):
            self.banner.dismiss()
        self._update_buttons()

    def _pulled(self, result: Any) -> None:
        from engine.install.asr_pull import AsrPull

        if isinstance(result, Persona):
            self.banner.show_message(f"{result.label} is ready.", level="info")
        elif isinstance(result, AsrPull):  # the window's words, not the CLI's --model
            self.banner.show_message(f"{result.entry.name} is ready and works offline: choose "
                                     "it in Settings, Speech recognition, Model.", level="info")
        else:  # a voice model: say whether it can clone, and how to get cloning if not
            from engine.install.voice_pull import describe

            self.banner.show_message(describe(result), level="info" if result.cloning
                                     else "warning")
        self.refresh()
        self.personas_changed.emit()

    def _pull_failed(self, err: TalkError) -> None:
        if err.code == "cancelled":
            self.banner.show_message(err, level="info")
        else:
            entry = self.pull_panel.entry
            speech = entry is not None and entry.kind == "asr"  # no folder to add for Whisper
            self.banner.show_message(window_pull_error(err, add_folder=None if speech
                                                       else "Add folder…"),
                                     title="Download failed")
        self.refresh()  # files may have arrived before the failure

    # -- remove ------------------------------------------------------------------------------

    def remove_selected(self) -> None:
        """Remove the selected persona after asking; the bundled one is refused in the banner."""
        row = self.selected_row()
        if row is not None and row.speech_model and row.entry is not None:
            self._remove_speech_model(row.entry)
            return
        if row is None or row.persona is None:
            return
        from engine.install import manager

        if row.bundled:  # the engine refuses before touching anything; say why here
            try:
                manager.remove(row.persona.id)
            except TalkError as err:
                self.banner.show_message(err, level="warning")
            return
        persona = row.persona
        purge = persona.weights.source == "hub" and not self._repo_shared(persona)
        detail = (" Its downloaded model files are deleted too." if purge
                  else " Its folder is deleted.")
        answer = QMessageBox.question(
            self, "Remove persona",
            f"Remove {persona.label} from this computer?{detail}",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return
        self._start_removal(Worker(manager.remove, persona.id, purge_cache=purge,
                                   name=f"remove {persona.id}"),
                            lambda _path: self._removed(persona))

    def _start_removal(self, worker: Worker, removed: Callable[[Any], None]) -> None:
        """Run a removal on a worker, the buttons greyed until it ends; failures in the banner."""
        self._removing = True
        self._update_buttons()
        worker.signals.finished.connect(removed)
        worker.signals.failed.connect(
            lambda err: self.banner.show_message(err, title="Remove failed"))
        worker.signals.done.connect(self._remove_finished)
        self.workers.start(worker)  # after connecting: a quick job could end before that

    def _remove_speech_model(self, entry: CatalogueEntry) -> None:
        """Delete a pulled Whisper size after asking (its download and openai-whisper copy)."""
        answer = QMessageBox.question(
            self, "Remove speech model",
            f"Remove {entry.name} from this computer? Its downloaded files are deleted; pull it "
            "again to use it.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return
        from engine.install import asr_pull

        self._start_removal(Worker(asr_pull.remove, entry.id, name=f"remove {entry.id}"),
                            lambda freed: self._speech_model_removed(entry, freed))

    def _speech_model_removed(self, entry: CatalogueEntry, freed: int) -> None:
        self.banner.show_message(f"Removed {entry.name} ({freed / 1e6:,.0f} MB freed).",
                                 level="info")
        self.refresh()
        self.personas_changed.emit()

    def _repo_shared(self, persona: Persona) -> bool:
        """Whether another persona uses the same Hub repo (its cache must then stay)."""
        repo = persona.weights.repo_id
        return any(r.persona is not None and r.persona.id != persona.id
                   and r.persona.weights.repo_id == repo for r in self.rows)

    def _removed(self, persona: Persona) -> None:
        self.banner.show_message(f"Removed {persona.label}.", level="info")
        self.refresh()
        self.personas_changed.emit()

    def _remove_finished(self) -> None:
        self._removing = False
        self._update_buttons()

    # -- add a folder ------------------------------------------------------------------------

    def add_folder(self) -> None:
        """Ask for a folder and add it as a persona (copied into the personas folder)."""
        if add_persona_folder(self, self.workers, self.banner, on_added=self._added,
                              on_finally=self._add_finished):
            self._adding = True
            self._update_buttons()

    def _added(self, persona: Persona) -> None:
        self.banner.show_message(f"Added {persona.label}.", level="info")
        self.refresh()
        self.select(persona.id)
        self.personas_changed.emit()

    def _add_finished(self) -> None:
        self._adding = False
        self._update_buttons()

    # -- export and import: a persona with its voice ---------------------------------------

    def export_selected(self) -> None:
        """Ask where (and whether to include the voice), then write the archive on a worker."""
        row = self.selected_row()
        if row is None or row.persona is None or self._sharing:
            return
        persona = row.persona
        from engine.voices.pairing import voice_for

        voice = voice_for(persona)
        with_voice = True
        if voice and not voice.startswith("builtin:"):
            answer = QMessageBox.question(
                self, "Export persona",
                f"Include the voice {voice}? Whoever imports the archive can make "
                f"{persona.label} speak in it (its consent record goes with it).",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
                | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes)
            if answer == QMessageBox.StandardButton.Cancel:
                return
            with_voice = answer == QMessageBox.StandardButton.Yes
        path, _ = QFileDialog.getSaveFileName(self, "Export persona", f"{persona.id}.zip",
                                              "Persona archives (*.zip)")
        if not path:
            return
        from engine.install.share import export_persona

        job = self._busy_sharing(True, f"Exporting {persona.label}…")
        self.workers.run(export_persona, persona.id, path, with_voice=with_voice,
                         name="export persona", on_done=self._exported,
                         on_error=lambda err: self.banner.show_message(err, title="Export"),
                         on_finally=lambda: self._share_over(job))

    def _exported(self, done: Any) -> None:
        voice = f" with the voice {done.voice}" if done.voice else ""
        self.banner.show_message(
            " ".join([f"Exported {done.persona.label}{voice} to {done.path.name} "
                      f"({done.bytes / 1e6:.1f} MB).", *done.notes]), level="info")

    def import_archive(self, path: str | None = None, name: str | None = None) -> None:
        """Ask for an archive (unless given) and import it on a worker."""
        if self._sharing:
            return
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Import persona", "",
                                                  "Persona archives (*.zip)")
            if not path:
                return
        from engine.install.share import import_persona

        job = self._busy_sharing(True, "Importing…")
        # ``name`` is the worker's own keyword: the new persona name goes in through partial.
        self.workers.run(partial(import_persona, path, name=name), name="import persona",
                         on_done=self._imported,
                         on_error=lambda err: self._import_failed(path, err),
                         on_finally=lambda: self._share_over(job))

    def _imported(self, got: Any) -> None:
        voice = f", speaking in {got.voice.name}" if got.voice is not None else ""
        self.banner.show_message(" ".join([f"Imported {got.persona.label}{voice}.", *got.notes]),
                                 level="info")
        self.refresh()
        self.select(got.persona.id)
        self.personas_changed.emit()

    def _import_failed(self, path: str, err: TalkError) -> None:
        if err.code != "persona_exists":
            self.banner.show_message(err, title="Import")
            return
        name, ok = QInputDialog.getText(self, "Import persona",
                                        f"{err.message} Import it under another name:")
        if ok and name.strip():
            self._busy_sharing(False)
            self.import_archive(path, name.strip())
        else:
            self.banner.show_message(err, level="warning", title="Import")

    def _busy_sharing(self, busy: bool, message: str | None = None) -> int:
        """Mark an export or import as running (or not); returns the job's number."""
        self._sharing = busy
        if busy:
            self._share_job += 1
        if message:
            self.banner.show_message(message, level="info")
        self._update_buttons()
        return self._share_job

    def _share_over(self, job: int) -> None:
        if job == self._share_job:  # a retry started from the failure handler is still running
            self._busy_sharing(False)

    # -- closing -----------------------------------------------------------------------------

    def done(self, result: int) -> None:
        """Qt: closing the dialog (Close, Escape, the window's ✕) cancels a running pull."""
        self.pull_panel.cancel()
        if not self._sharing:
            self.banner.clear(level="info")  # "Added…", "Removed…" are stale when reopened
        super().done(result)
