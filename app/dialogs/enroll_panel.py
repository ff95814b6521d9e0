"""The "Add a voice" half of the Voices dialog: record or import a sample, then see its checks.

Recording shows the passage to read, counts 3-2-1 down (a QTimer, so the window stays live),
records for a chosen number of seconds with a level meter and the time left, and can be stopped
early. Importing reads a file. Both end in :func:`engine.voices.store.enroll`, whose verdict is
shown check by check; a refused sample can be kept anyway (flagged). Microphone, file and model
work runs on workers; this widget only reacts to their signals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.widgets.level_meter import LevelMeter
from app.workers import Worker, WorkerPool
from engine.audio.frames import SAMPLE_RATE, dbfs
from engine.audio.recording import Recording, record
from engine.errors import TalkError
from engine.fsutil import slug
from engine.voices import store
from engine.voices.passages import READ_ALOUD
from engine.voices.quality import Verdict

COUNTDOWN_S = 3  # seconds of 3-2-1 before recording starts
RECORD_S = (5, 30, 10)  # recording length: least, most, default (seconds)
AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.mp3);;All files (*)"
CHECK_NAMES = {"duration": "Length", "clipping": "Clipping", "speech": "Speech",
               "loudness": "Loudness", "noise": "Background noise",
               "one_speaker": "One speaker", "bandwidth": "Bandwidth",
               "sample_rate": "Sample rate"}


class EncoderCache:
    """The speaker encoder, loaded once by whichever worker first needs it, then kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._encoder: Any = None

    def get(self) -> Any:
        """The loaded SpeakerEncoder (loads it on first use; call from a worker)."""
        with self._lock:
            if self._encoder is None:
                from engine.voices.encoder import SpeakerEncoder

                self._encoder = SpeakerEncoder()
            return self._encoder


def default_microphone() -> Any:
    """The system's default input (sounddevice is imported here, off the GUI thread)."""
    from engine.audio.capture import Microphone

    return Microphone(None)


def record_sample(microphone_factory: Callable[[], Any], seconds: float, *,
                  progress: Callable[[tuple[float, float]], None], cancel: Any) -> Recording:
    """Record ``seconds`` of audio (less if cancelled); runs on a worker.

    ``progress`` receives ``(level_dbfs, seconds_recorded)`` for each block (see
    engine.audio.recording.record, which counts samples, not the clock).
    """
    return record(microphone_factory(), seconds, cancel=cancel,
                  on_block=lambda block, done: progress((dbfs(block), done)))


def load_file(path: str) -> np.ndarray:
    """Read an audio file as 16 kHz mono (on a worker)."""
    from engine.audio.files import load_audio

    return load_audio(path)


CONSENT_BY = "the person enrolling it (ticked in the app)"


def enroll_sample(encoders: EncoderCache, name: str, audio: np.ndarray, source: str,
                  force: bool) -> tuple[store.Voice, Verdict]:
    """Check and store a sample (on a worker); raises VoiceQualityError when it is refused."""
    return store.enroll(name, audio, SAMPLE_RATE, source=source, encoder=encoders.get(),
                        force=force, consent=CONSENT_BY)


class VerdictView(QLabel):
    """The checks of the last sample, one line each, with what to do about a failed one."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMargin(8)
        self.setAccessibleName("Sample check")
        self._plain = ""
        self.hide()

    def show_lines(self, headline: str, lines: list[tuple[bool | None, str]]) -> None:
        """A bold headline and lines marked ✓ (True), ✗ (False) or nothing (None)."""
        marks = {True: "✓", False: "✗", None: ""}
        plain = [headline] + [f"{marks[ok]} {text}".strip() for ok, text in lines]
        html = [f"<b>{_escape(headline)}</b>"] + [
            f"<b>{marks[ok]} {_escape(text)}</b>" if ok is False
            else f"{marks[ok]} {_escape(text)}" for ok, text in lines]
        self._plain = "\n".join(plain)
        self.setText("<br>".join(html))
        self.show()

    def show_verdict(self, headline: str, verdict: Verdict, advice: str | None = None) -> None:
        """Each check with its message, failed ones in bold, then ``advice``."""
        lines: list[tuple[bool | None, str]] = [
            (None if c.note else c.ok,
             f"{'Note: ' if c.note else ''}{CHECK_NAMES.get(c.name, c.name)}: {c.message}")
            for c in verdict.checks]
        if advice:
            lines.append((None, advice))
        self.show_lines(headline, lines)

    def clear_verdict(self) -> None:
        """Hide the panel."""
        self._plain = ""
        self.setText("")
        self.hide()

    def plain_text(self) -> str:
        """What the panel says, as plain text ('' when hidden)."""
        return self._plain


class EnrollPanel(QGroupBox):
    """Record or import a sample and enroll it; emits ``enrolled(voice)`` when one is saved.

    Args:
        workers: the app's worker pool.
        microphone_factory: makes the microphone (default: the system's default input).
        countdown_s: seconds of countdown before recording (0 starts at once).
        parent: the owning widget.

    """

    enrolled = Signal(object)  # store.Voice
    message = Signal(object, str)  # (TalkError or text, level) for the dialog's banner

    def __init__(self, workers: WorkerPool, *,
                 microphone_factory: Callable[[], Any] | None = None,
                 countdown_s: int = COUNTDOWN_S, parent: QWidget | None = None):
        super().__init__("Add a voice", parent)
        self.workers = workers
        self.microphone_factory = microphone_factory or default_microphone
        self.countdown_s = countdown_s
        self.encoders = EncoderCache()
        self._state = "idle"  # idle, countdown, recording, loading, checking
        self._countdown_left = 0
        self._recorder: Worker | None = None
        self._record_name = ""
        self._discard = False  # the recording was abandoned (dialog closed), not just stopped
        self._pending: tuple[str, np.ndarray, str] | None = None  # refused: kept for Keep anyway
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._tick)
        self._build()
        self._update_buttons()

    # --- layout -----------------------------------------------------------------------------

    def _build(self) -> None:
        self.name_edit = QLineEdit(self)
        self.name_edit.setPlaceholderText("e.g. Grandpa")
        self.name_edit.setMaxLength(80)
        self.seconds_spin = QSpinBox(self)
        self.seconds_spin.setRange(RECORD_S[0], RECORD_S[1])
        self.seconds_spin.setValue(RECORD_S[2])
        self.seconds_spin.setSuffix(" s")
        self.seconds_spin.setAccessibleName("Recording length in seconds")
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        name_label = QLabel("N&ame:", self)
        name_label.setBuddy(self.name_edit)
        seconds_label = QLabel("R&ecord for:", self)
        seconds_label.setBuddy(self.seconds_spin)
        form.addRow(name_label, self.name_edit)
        form.addRow(seconds_label, self.seconds_spin)

        intro = QLabel("Press Record, wait for the countdown, then read this aloud in your "
                       "normal voice:", self)
        intro.setWordWrap(True)
        self.passage_label = QLabel(READ_ALOUD, self)
        self.passage_label.setWordWrap(True)
        self.passage_label.setFrameShape(QFrame.Shape.StyledPanel)
        self.passage_label.setMargin(8)
        self.passage_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.passage_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.passage_label.setFont(font)

        self.consent_check = QCheckBox(store.CONSENT_STATEMENT, self)
        self.consent_check.setToolTip("Pocket TTS's terms forbid cloning a voice without its "
                                      "speaker's explicit consent; it is stored with the voice")
        self.consent_check.toggled.connect(self._update_buttons)
        self.record_button = QPushButton("&Record", self)
        self.record_button.setToolTip("Count down, then record the passage")
        self.record_button.clicked.connect(self.start_recording)
        self.stop_button = QPushButton("&Stop", self)
        self.stop_button.setToolTip("End the countdown or the recording now")
        self.stop_button.clicked.connect(self.stop)
        self.import_button = QPushButton("&Import file…", self)
        self.import_button.setToolTip("Use a recording you already have (WAV, FLAC, OGG, MP3)")
        self.import_button.clicked.connect(self.import_file)
        buttons = QHBoxLayout()
        buttons.addWidget(self.record_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)

        self.countdown_label = QLabel("", self)
        self.countdown_label.setAccessibleName("Recording status")
        big = self.countdown_label.font()
        big.setPointSizeF(big.pointSizeF() * 1.3)
        big.setBold(True)
        self.countdown_label.setFont(big)
        # Room for the status from the start, so the panel does not jump when it appears.
        self.countdown_label.setMinimumHeight(self.countdown_label.fontMetrics().height() + 4)
        self.level_meter = LevelMeter(self)
        status = QHBoxLayout()
        status.addWidget(self.countdown_label, 1)
        status.addWidget(self.level_meter, 1)

        self.verdict_view = VerdictView(self)
        self.keep_anyway_button = QPushButton("&Keep anyway", self)
        self.keep_anyway_button.setToolTip("Save the refused sample; the voice is flagged")
        self.keep_anyway_button.clicked.connect(self.keep_anyway)
        self.keep_anyway_button.hide()
        keep = QHBoxLayout()
        keep.addStretch(1)
        keep.addWidget(self.keep_anyway_button)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(intro)
        layout.addWidget(self.passage_label)
        layout.addWidget(self.consent_check)
        layout.addLayout(buttons)
        layout.addLayout(status)
        layout.addWidget(self.verdict_view)
        layout.addLayout(keep)
        layout.addStretch(1)
        for button in (self.record_button, self.stop_button, self.import_button,
                       self.keep_anyway_button):
            button.setAutoDefault(False)  # Enter in the name field must not start a recording
        for first, second in [(self.name_edit, self.seconds_spin),
                              (self.seconds_spin, self.record_button),
                              (self.record_button, self.stop_button),
                              (self.stop_button, self.import_button),
                              (self.import_button, self.keep_anyway_button)]:
            QWidget.setTabOrder(first, second)

    def _update_buttons(self) -> None:
        # Record and Import stay enabled without a name: pressed, they say what is missing.
        idle = self._state == "idle"
        consented = self.consent_check.isChecked()
        self.record_button.setEnabled(idle and consented)
        self.import_button.setEnabled(idle and consented)
        self.stop_button.setEnabled(self._state in ("countdown", "recording"))
        self.keep_anyway_button.setEnabled(idle and self._pending is not None)
        self.name_edit.setEnabled(idle)
        self.seconds_spin.setEnabled(idle)

    def _set_state(self, state: str, status: str = "") -> None:
        self._state = state
        self.countdown_label.setText(status)
        self._update_buttons()

    @property
    def busy(self) -> bool:
        """Whether a countdown, recording, file read or check is under way."""
        return self._state != "idle"

    # --- recording ----------------------------------------------------------------------------

    def start_recording(self) -> None:
        """Count down, then record (if the name is usable)."""
        name = self._usable_name()
        if name is None or self.busy:
            return
        self._forget_refused()
        self._discard = False
        self._countdown_left = self.countdown_s
        if self._countdown_left <= 0:
            self._begin_recording()
            return
        self._set_state("countdown", self._countdown_text())
        self._timer.start()

    def _countdown_text(self) -> str:
        return f"Get ready… {self._countdown_left}"

    def _tick(self) -> None:
        self._countdown_left -= 1
        if self._countdown_left > 0:
            self.countdown_label.setText(self._countdown_text())
            return
        self._timer.stop()
        self._begin_recording()

    def _begin_recording(self) -> None:
        seconds = self.seconds_spin.value()
        self._set_state("recording", f"Recording… {seconds:.1f} s left")
        self._record_name = self.name_edit.text().strip()
        self._recorder = self.workers.run(
            record_sample, self.microphone_factory, seconds, name="recording",
            with_progress=True, with_cancel=True, on_progress=self._record_progress,
            on_done=self._recorded, on_error=self._record_failed)

    def _record_progress(self, update: tuple[float, float]) -> None:
        level, recorded = update
        self.level_meter.set_level(level)
        left = max(0.0, self.seconds_spin.value() - recorded)
        self.countdown_label.setText(f"Recording… {left:.1f} s left")

    def _recorded(self, recording: Recording) -> None:
        self._recorder = None
        self.level_meter.reset()
        if self._discard:
            self._set_state("idle")
            return
        if recording.lost is not None:
            self.message.emit(recording.lost, "warning")
        self._check(self._record_name, recording.audio, "recording", force=False)

    def _record_failed(self, err: TalkError) -> None:
        self._recorder = None
        self.level_meter.reset()
        self._set_state("idle")
        self.message.emit(err, "error")

    def stop(self) -> None:
        """End the countdown (nothing recorded) or the recording (what is recorded is checked)."""
        if self._state == "countdown":
            self._timer.stop()
            self._set_state("idle", "Recording cancelled.")
        elif self._state == "recording" and self._recorder is not None:
            self._recorder.cancel.cancel()
            self.stop_button.setEnabled(False)

    def abandon(self) -> None:
        """Stop everything and keep nothing (the dialog is closing)."""
        self._discard = True
        self.stop()

    # --- importing ----------------------------------------------------------------------------

    def import_file(self) -> None:
        """Ask for an audio file, then read and check it."""
        name = self._usable_name()
        if name is None or self.busy:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Import a voice sample", str(Path.home()),
                                              AUDIO_FILTER)
        if not path:
            return
        self._forget_refused()
        self._set_state("loading", f"Reading {Path(path).name}…")
        self.workers.run(load_file, path, name="reading the sample",
                         on_done=lambda audio: self._check(name, audio, Path(path).name,
                                                           force=False),
                         on_error=self._failed)

    # --- checking and saving ------------------------------------------------------------------

    def _check(self, name: str, audio: np.ndarray, source: str, *, force: bool) -> None:
        self._set_state("checking", "Checking the sample…")
        self.verdict_view.show_lines("Checking the sample…", [])
        self.workers.run(enroll_sample, self.encoders, name, audio, source, force,
                         name="checking the sample",
                         on_done=self._saved,
                         on_error=lambda err: self._refused(err, name, audio, source))

    def _saved(self, result: tuple[store.Voice, Verdict]) -> None:
        voice, verdict = result
        self._forget_refused()
        self._set_state("idle", "")
        if voice.flagged:
            headline = f"Voice {voice.name} saved (flagged: it failed a check)."
        else:
            headline = f"Voice {voice.name} saved."
        self.verdict_view.show_verdict(headline, verdict)
        self.name_edit.clear()
        self.enrolled.emit(voice)

    def _refused(self, err: TalkError, name: str, audio: np.ndarray, source: str) -> None:
        if not isinstance(err, store.VoiceQualityError):
            self._failed(err)
            return
        self._pending = (name, audio, source)
        self._set_state("idle", "")
        self.verdict_view.show_verdict(
            f"Not saved: this sample of {name} is not good enough to clone.", err.verdict,
            "Record again, or keep it anyway (the voice will be flagged).")
        self.keep_anyway_button.show()
        self._update_buttons()

    def _failed(self, err: TalkError) -> None:
        self._set_state("idle", "")
        self.verdict_view.clear_verdict()
        self.message.emit(err, "error")

    def keep_anyway(self) -> None:
        """Save the refused sample flagged."""
        if self._pending is None or self.busy:
            return
        name, audio, source = self._pending
        self._forget_refused()
        self._check(name, audio, source, force=True)

    def _forget_refused(self) -> None:
        self._pending = None
        self.keep_anyway_button.hide()
        self._update_buttons()

    def _usable_name(self) -> str | None:
        """The typed name, or None after saying why it cannot be used."""
        name = self.name_edit.text().strip()
        problem = None
        if not slug(name):
            problem = "Type a name for the voice first (at least one letter or digit)."
        elif (store.voices_dir() / slug(name)).exists():
            problem = f"A voice called {name!r} already exists. Pick another name."
        if problem:
            self.message.emit(problem, "warning")
            self.name_edit.setFocus()
            return None
        return name


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
