"""One download from the catalogue, with its progress bar and Cancel button.

Shared by the "Models and personas" dialog, the first-run page and the Settings dialog (Whisper
sizes), so all pull the same way: ``engine.install.manager.pull`` (``asr_pull.pull`` for a
Whisper size) in a worker, bytes shown as "MB done / MB in all (percent)", Cancel through the
worker's cancel token. Only one pull runs per panel.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from app.workers import Worker, WorkerPool
from engine.cancel import CancelToken
from engine.errors import TalkError
from engine.models.catalogue import CatalogueEntry

STEPS = 1000  # progress bar resolution: a tenth of a percent (bytes overflow a Qt int)


def add_persona_folder(parent: QWidget, workers: WorkerPool, banner: Any, *,
                       on_added: Callable[[Any], None], on_finally: Callable[[], None]) -> bool:
    """Ask for a folder and add it as a persona on a worker; False if the person cancelled.

    ``on_added`` gets the Persona; a failure is shown in ``banner``; ``on_finally`` runs
    either way (the callbacks arrive after this returns, on the GUI thread).
    """
    folder = QFileDialog.getExistingDirectory(
        parent, "Choose a persona folder or a transformers checkpoint folder")
    if not folder:
        return False
    from engine.install import manager

    workers.run(manager.add_folder, Path(folder), name="add persona folder", on_done=on_added,
                on_error=lambda err: banner.show_message(err, title="Add folder failed"),
                on_finally=on_finally)
    return True


def window_pull_error(err: TalkError, *, pull: str = "Pull",
                      add_folder: str | None = "Add folder…") -> TalkError:
    """A pull failure in the window's words: its buttons, not terminal commands or errno text.

    The engine's message (for the command line) keeps the library's reason; here it goes in
    the hint's last sentence only for errors other than "no network". ``add_folder`` None:
    nothing can be added from a folder (a Whisper size), so the hint does not offer it.
    """
    if err.code != "hub_unreachable":
        return err
    import re

    found = re.match(r"Cannot download (.+?): ", err.message)
    what = found.group(1) if found else "the model"
    blocked = "HF_HUB_OFFLINE" in f"{err.message} {err.hint}"
    reason = ("the HF_HUB_OFFLINE environment variable is set, which blocks downloads" if blocked
              else "this computer cannot reach the Hugging Face Hub")
    first = (f"Start the app without HF_HUB_OFFLINE and press {pull} again." if blocked
             else f"Connect to the internet and press {pull} again.")
    copied = (f" If you have the model's files (copied from another computer), add them with "
              f"the “{add_folder}” button." if add_folder else "")
    return TalkError(f"Cannot download {what}: {reason}.", hint=first + copied, code=err.code)


def pull_job(ref: str, *, progress: Any, cancel: CancelToken) -> Any:
    """Worker body: pull ``ref``, reporting ``("text", line)`` and ``("bytes", done, total)``."""
    from engine.install import manager

    return manager.pull(ref, progress=lambda line: progress(("text", line)),
                        on_bytes=lambda done, total: progress(("bytes", done, total)),
                        cancel=cancel)


def asr_pull_job(ref: str, *, progress: Any, cancel: CancelToken) -> Any:
    """Worker body for a Whisper size: like :func:`pull_job`, through ``asr_pull``."""
    from engine.install import asr_pull

    return asr_pull.pull(ref, progress=lambda line: progress(("text", line)),
                         on_bytes=lambda done, total: progress(("bytes", done, total)),
                         cancel=cancel)


class PullPanel(QWidget):
    """Status line, progress bar and Cancel for one pull; hidden while idle."""

    succeeded = Signal(object)  # the pulled Persona, a VoicePull or an AsrPull (Whisper)
    failed = Signal(object)  # a TalkError; a cancelled pull fails with code "cancelled"
    busy_changed = Signal(bool)

    def __init__(self, workers: WorkerPool, parent: QWidget | None = None):
        super().__init__(parent)
        self.workers = workers
        self.worker: Worker | None = None  # the running pull
        self.entry: CatalogueEntry | None = None
        self.status_label = QLabel(self)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, STEPS)
        self.progress_bar.setAccessibleName("Download progress")
        self.cancel_button = QPushButton("Cance&l download", self)
        self.cancel_button.setToolTip("Stop the download; files already complete are kept")
        self.cancel_button.clicked.connect(self.cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status_label)
        layout.addWidget(self.progress_bar, 1)
        layout.addWidget(self.cancel_button)
        self.hide()

    @property
    def busy(self) -> bool:
        """Whether a pull is running."""
        return self.worker is not None

    def start(self, entry: CatalogueEntry) -> bool:
        """Pull ``entry`` in a worker; False (and nothing started) if one is already running."""
        if self.busy:
            return False
        self.entry = entry
        self.status_label.setText(f"Downloading {entry.name}…")
        self.progress_bar.setRange(0, STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat(f"0 / about {entry.size_mb} MB (%p%)")
        self.cancel_button.setEnabled(True)
        job = asr_pull_job if entry.kind == "asr" else pull_job
        self.worker = Worker(job, entry.id, name=f"pull {entry.id}", with_progress=True,
                             with_cancel=True)
        self.worker.signals.progress.connect(self._progress)
        self.worker.signals.finished.connect(self._done)
        self.worker.signals.failed.connect(self._failed)
        self.worker.signals.done.connect(self._finished)
        # Started only now: a pull that fails at once (offline) could otherwise end before its
        # signals are connected, and the panel would wait for ever.
        self.workers.start(self.worker)
        self.show()
        self.busy_changed.emit(True)
        return True

    def cancel(self) -> None:
        """Ask the running pull to stop; it ends with a "cancelled" failure."""
        if self.worker is None:
            return
        self.worker.cancel.cancel()
        self.cancel_button.setEnabled(False)
        self.status_label.setText("Cancelling…")

    def _progress(self, report: Any) -> None:
        if self.worker is None or not isinstance(report, tuple):
            return
        if report[0] == "bytes":
            self._show_bytes(report[1], report[2])

    def _show_bytes(self, done: int, total: int | None) -> None:
        done_mb = done / 1e6
        if total:
            self.progress_bar.setRange(0, STEPS)
            self.progress_bar.setValue(min(STEPS, round(done * STEPS / total)))
            self.progress_bar.setFormat(f"{done_mb:.1f} / {total / 1e6:.1f} MB (%p%)")
        else:  # size unknown yet: a busy bar and the count
            self.progress_bar.setRange(0, 0)
            self.progress_bar.setFormat(f"{done_mb:.1f} MB")

    def _done(self, persona: Any) -> None:
        self.progress_bar.setRange(0, STEPS)
        self.progress_bar.setValue(STEPS)  # also when every file was already in the cache
        self.progress_bar.setFormat("Done (%p%)")
        self.status_label.setText("Downloaded.")
        self.succeeded.emit(persona)

    def _failed(self, err: TalkError) -> None:
        self.progress_bar.setRange(0, STEPS)
        self.status_label.setText("Cancelled." if err.code == "cancelled" else "Failed.")
        self.failed.emit(err)

    def _finished(self) -> None:
        self.worker = None
        self.cancel_button.setEnabled(False)
        self.hide()
        self.busy_changed.emit(False)
