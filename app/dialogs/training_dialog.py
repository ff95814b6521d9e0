"""Train a persona from the window: the ``train all`` command in a worker process, watched.

Training runs in its own process (``python -m training all --progress-json``): it uses all the
cores and a lot of memory for a long time, and a crash or an out-of-memory kill there cannot take
the window down. The dialog reads its JSON progress lines: a row per stage, a progress bar, the
ETA and a live loss plot. Stop sends SIGTERM (the trainer saves a checkpoint first); Resume runs
the same command, which carries on from that checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPointF, QProcess, QProcessEnvironment, QSize, Qt, Signal
from PySide6.QtGui import QPainter, QPalette, QPen, QPolygonF
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.launcher import training_command_prefix
from app.widgets.banner import Banner
from engine.errors import TalkError
from training.cli import STAGES, format_duration

STAGE_NAMES = {"scrape": "Fetch threads", "filter": "Filter", "dataset": "Build dataset",
               "train": "Fine-tune", "evaluate": "Evaluate", "export": "Export persona"}
# Base models offered, with their parameter counts (for the memory estimate).
BASES = (("microsoft/DialoGPT-small", "DialoGPT small (117M)", 124_000_000),
         ("microsoft/DialoGPT-medium", "DialoGPT medium (345M)", 355_000_000),
         ("microsoft/DialoGPT-large", "DialoGPT large (762M)", 774_000_000),
         ("starter", "Starter: SmolLM2-135M (offline)", 135_000_000))


class LossPlot(QWidget):
    """The training loss over steps, drawn in the palette's colours."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.points: list[tuple[int, float]] = []
        self.setMinimumHeight(110)
        self.setAccessibleName("Training loss plot")

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        """Qt: a wide strip."""
        return QSize(420, 130)

    def add(self, step: int, loss: float) -> None:
        """Add a point (a repeated step replaces the old one: a resumed run)."""
        self.points = [p for p in self.points if p[0] < step] + [(step, loss)]
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Qt: axes, the loss line and its latest value."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        text_colour = palette.color(QPalette.ColorRole.Text)
        if len(self.points) < 2:
            painter.setPen(text_colour)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                             "The loss appears here as training runs.")
            return
        left, top, right, bottom = 44, 8, self.width() - 8, self.height() - 20
        steps = [s for s, _ in self.points]
        losses = [v for _, v in self.points]
        lo, hi = min(losses), max(losses)
        span = (hi - lo) or 1.0
        first, last = steps[0], steps[-1]
        width = max(1, last - first)

        def at(step: int, loss: float) -> QPointF:
            return QPointF(left + (step - first) / width * (right - left),
                           bottom - (loss - lo) / span * (bottom - top))

        painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid), 1))
        painter.drawLine(left, bottom, right, bottom)
        painter.drawLine(left, top, left, bottom)
        painter.setPen(text_colour)
        painter.drawText(2, top + 10, f"{hi:.2f}")
        painter.drawText(2, bottom, f"{lo:.2f}")
        painter.drawText(left, self.height() - 4, f"step {first}")
        painter.drawText(right - 70, self.height() - 4, f"step {last}")
        painter.setPen(QPen(palette.color(QPalette.ColorRole.Highlight), 2))
        painter.drawPolyline(QPolygonF([at(s, v) for s, v in self.points]))
        painter.end()


class TrainingDialog(QDialog):
    """Choose a source and a base, start, watch, stop, resume."""

    persona_created = Signal(str)  # persona id, once exported

    def __init__(self, parent: QWidget | None = None, *, python: str = sys.executable):
        super().__init__(parent)
        self.setWindowTitle("Train a persona")
        self.python = python
        self.process: QProcess | None = None
        self._buffer = ""
        self._stderr = ""
        self._failed: TalkError | None = None
        self.stage_state: dict[str, str] = {}
        self._exported = False
        self.extra_args: list[str] = []  # appended to the command (tests: a few tiny steps)
        self._build()
        self._update_estimate()
        self._set_running(False)

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.banner = Banner(self)
        source_box = QGroupBox("What it learns from", self)
        self.subreddit_radio = QRadioButton("&Subreddit:", source_box)
        self.file_radio = QRadioButton("&Dialogue file:", source_box)
        group = QButtonGroup(self)
        group.addButton(self.subreddit_radio)
        group.addButton(self.file_radio)
        self.subreddit_radio.setChecked(True)
        self.subreddit_edit = QLineEdit(source_box)
        self.subreddit_edit.setPlaceholderText("e.g. berkeley")
        self.subreddit_edit.setAccessibleName("Subreddit")
        self.file_edit = QLineEdit(source_box)
        self.file_edit.setPlaceholderText(".jsonl of turn lists, or .csv with conversation,text")
        self.file_edit.setAccessibleName("Dialogue file")
        browse = QPushButton("&Browse…", source_box)
        browse.clicked.connect(self._browse)
        self.recipe_button = QPushButton("Use the &Berkeley recipe", source_box)
        self.recipe_button.setToolTip("r/berkeley on DialoGPT medium: the original persona")
        self.recipe_button.clicked.connect(self._berkeley)
        source = QFormLayout(source_box)
        source.addRow(self.subreddit_radio, self.subreddit_edit)
        row = QHBoxLayout()
        row.addWidget(self.file_edit, 1)
        row.addWidget(browse)
        source.addRow(self.file_radio, row)
        source.addRow("", self.recipe_button)
        self.subreddit_edit.textEdited.connect(lambda: self.subreddit_radio.setChecked(True))
        self.file_edit.textEdited.connect(lambda: self.file_radio.setChecked(True))

        model_box = QGroupBox("How", self)
        self.base_combo = QComboBox(model_box)
        self.base_combo.setEditable(True)  # a folder or another Hub id may be typed
        for ref, label, _ in BASES:
            self.base_combo.addItem(label, ref)
        self.base_combo.setCurrentIndex(1)
        self.method_combo = QComboBox(model_box)
        self.method_combo.addItem("LoRA adapter (less memory, fast)", "lora")
        self.method_combo.addItem("Full fine-tune (best fit, most memory)", "full")
        self.epochs_spin = QSpinBox(model_box)
        self.epochs_spin.setRange(1, 50)
        self.epochs_spin.setValue(3)
        self.batch_spin = QSpinBox(model_box)
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(4)
        self.name_edit = QLineEdit(model_box)
        self.name_edit.setPlaceholderText("the persona's name, e.g. Berkeley")
        self.voice_combo = QComboBox(model_box)
        self.voice_combo.setToolTip("The persona speaks in this voice once trained (enrolled "
                                    "voices, and built-in ones of a pulled voice model)")
        self._fill_voices()
        self.memory_label = QLabel(model_box)
        self.memory_label.setWordWrap(True)
        form = QFormLayout(model_box)
        for text, widget in (("Base &model:", self.base_combo), ("Me&thod:", self.method_combo),
                             ("&Epochs:", self.epochs_spin), ("Batch si&ze:", self.batch_spin),
                             ("&Name:", self.name_edit),
                             ("Speaks in the &voice of:", self.voice_combo),
                             ("Memory:", self.memory_label)):
            label = QLabel(text, model_box)
            label.setBuddy(widget)
            form.addRow(label, widget)
        for signal in (self.base_combo.currentIndexChanged, self.method_combo.currentIndexChanged,
                       self.batch_spin.valueChanged):
            signal.connect(self._update_estimate)

        progress_box = QGroupBox("Progress", self)
        self.stage_labels: dict[str, QLabel] = {}
        stages = QHBoxLayout()
        for stage in STAGES:
            label = QLabel(STAGE_NAMES[stage], progress_box)
            stages.addWidget(label)
            self.stage_labels[stage] = label
        self.progress_bar = QProgressBar(progress_box)
        self.progress_bar.setFormat("%p%")
        self.eta_label = QLabel("", progress_box)
        self.status_label = QLabel("Not started.", progress_box)
        self.status_label.setWordWrap(True)
        self.loss_plot = LossPlot(progress_box)
        progress = QVBoxLayout(progress_box)
        progress.addLayout(stages)
        bar_row = QHBoxLayout()
        bar_row.addWidget(self.progress_bar, 1)
        bar_row.addWidget(self.eta_label)
        progress.addLayout(bar_row)
        progress.addWidget(self.status_label)
        progress.addWidget(self.loss_plot)

        self.start_button = QPushButton("&Start", self)
        self.start_button.setDefault(True)
        self.stop_button = QPushButton("St&op", self)
        self.stop_button.setToolTip("Stops at a checkpoint; Resume carries on from it.")
        self.close_button = QPushButton("&Close", self)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(source_box)
        layout.addWidget(model_box)
        layout.addWidget(progress_box, 1)
        layout.addLayout(buttons)
        self.resize(640, 720)

    # -- inputs -------------------------------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Dialogue file", str(Path.home()),
                                              "Dialogues (*.jsonl *.csv)")
        if path:
            self.file_edit.setText(path)
            self.file_radio.setChecked(True)

    def _berkeley(self) -> None:
        self.subreddit_radio.setChecked(True)
        self.subreddit_edit.setText("berkeley")
        self.base_combo.setCurrentIndex(1)
        self.name_edit.setText("Berkeley")

    def base_ref(self) -> str:
        """The base model chosen (a Hub id, persona id or a typed folder)."""
        text = self.base_combo.currentText().strip()
        index = self.base_combo.findText(text)
        return self.base_combo.itemData(index) if index >= 0 else text

    def _update_estimate(self) -> None:
        """Show the estimated peak memory of the run on a GPU and on this CPU."""
        try:
            from training.memory import estimate_memory
            from training.train import TrainConfig
        except ImportError:
            self.memory_label.setText("(estimate unavailable: the training extras are not "
                                      "installed)")
            return
        params = next((n for ref, _, n in BASES if ref == self.base_ref()), None)
        if params is None:
            self.memory_label.setText("Unknown model size: no estimate.")
            return
        config = TrainConfig(base_model=self.base_ref(), run_dir="-",
                             method=self.method_combo.currentData(),
                             batch_size=self.batch_spin.value(), max_tokens=128)
        gpu = estimate_memory(config, params, on_cuda=True) / 2**30
        cpu = estimate_memory(config, params, on_cuda=False) / 2**30
        self.memory_label.setText(f"about {gpu:.1f} GB on a GPU (fp16), {cpu:.1f} GB of RAM "
                                  "on the CPU — an estimate")

    def _fill_voices(self) -> None:
        from engine.voices.builtin import pulled_builtin_voices
        from engine.voices.store import list_voices

        self.voice_combo.addItem("(choose later)", None)
        for voice in list_voices()[0]:
            self.voice_combo.addItem(voice.name, voice.name)
        for builtin in pulled_builtin_voices():
            self.voice_combo.addItem(builtin.label, builtin.ref)

    def command(self) -> list[str]:
        """The ``train all`` command line for the chosen settings.

        Raises:
            TalkError: a required field is empty.

        """
        name = self.name_edit.text().strip()
        if not name:
            raise TalkError("Give the persona a name.", code="training_name_missing")
        args = [*training_command_prefix(), "all", "--progress-json", "--name", name,
                "--base", self.base_ref(), "--method", self.method_combo.currentData(),
                "--epochs", str(self.epochs_spin.value()),
                "--batch-size", str(self.batch_spin.value())]
        if self.file_radio.isChecked():
            path = self.file_edit.text().strip()
            if not path or not Path(path).expanduser().is_file():
                raise TalkError("Choose an existing dialogue file (.jsonl or .csv).",
                                code="training_file_missing")
            args += ["--dialogues", str(Path(path).expanduser())]
        else:
            subreddit = self.subreddit_edit.text().strip().removeprefix("r/")
            if not subreddit:
                raise TalkError("Name a subreddit, or choose a dialogue file.",
                                code="training_source_missing")
            args += ["--subreddit", subreddit]
        if self.voice_combo.currentData():
            args += ["--voice", self.voice_combo.currentData()]
        return [self.python, *args, *self.extra_args]

    # -- the process --------------------------------------------------------------------------
    def start(self) -> None:
        """Start (or resume: the trainer carries on from its checkpoint)."""
        if self.process is not None:
            return
        try:
            command = self.command()
        except TalkError as err:
            self.banner.show_message(err, "error", "Training")
            return
        self.banner.dismiss()
        self._failed, self._buffer, self._stderr = None, "", ""
        self._exported = False
        for stage in STAGES:  # a resume shows this run's stages, not the last one's
            self._mark(stage, "")
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(env)
        process.setWorkingDirectory(str(Path(__file__).resolve().parents[2]))
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._process_error)
        self.process = process
        self._set_running(True)
        self.status_label.setText("Starting…")
        process.start(command[0], command[1:])

    def stop(self) -> None:
        """Ask the trainer to stop at a checkpoint (SIGTERM)."""
        if self.process is not None:
            self.status_label.setText("Stopping at the next checkpoint…")
            self.stop_button.setEnabled(False)
            self.process.terminate()

    def _read_stdout(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if line.startswith("{"):
                try:
                    self.handle(json.loads(line))
                except ValueError:
                    continue

    def _read_stderr(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode("utf-8", "replace")
        self._stderr = (self._stderr + text)[-4000:]  # the tail explains a crash

    def handle(self, message: dict[str, Any]) -> None:
        """Show one progress message of the trainer."""
        stage, event = message.get("stage", ""), message.get("event", "")
        if event == "error":
            self._failed = TalkError(message.get("message", "Training failed."),
                                     hint=message.get("hint"), code=message.get("code"))
            return
        if stage not in STAGES:
            if message.get("text"):
                self.status_label.setText(message["text"])
            return
        if event == "start":
            self._mark(stage, "running")
            self.progress_bar.setRange(0, 0)
            self.eta_label.setText("")
            self.status_label.setText(f"{STAGE_NAMES[stage]}: {message.get('text', '')}")
        elif event == "progress":
            if "step" in message:
                total = int(message.get("total_steps") or 0)
                self.progress_bar.setRange(0, max(1, total))
                self.progress_bar.setValue(int(message["step"]))
                if message.get("loss") is not None:
                    self.loss_plot.add(int(message["step"]), float(message["loss"]))
                eta = message.get("eta_s")
                self.eta_label.setText(f"ETA {format_duration(eta)}" if eta is not None else "")
            elif message.get("total"):
                self.progress_bar.setRange(0, int(message["total"]))
                self.progress_bar.setValue(int(message.get("done", 0)))
        elif event in ("done", "skip"):
            self._mark(stage, "done" if message.get("status") != "cancelled" else "stopped")
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(1)
            self.status_label.setText(f"{STAGE_NAMES[stage]}: {message.get('text', '')}")
            if stage == "export" and event == "done" and message.get("persona"):
                self._exported = True
                self.persona_created.emit(message["persona"])

    def _mark(self, stage: str, state: str) -> None:
        self.stage_state[stage] = state
        sign = {"running": "▶ ", "done": "✓ ", "stopped": "⏸ ", "failed": "✗ "}.get(state, "")
        label = self.stage_labels[stage]
        label.setText(sign + STAGE_NAMES[stage])
        font = label.font()
        font.setBold(state == "running")
        label.setFont(font)

    def _finished(self, code: int, _status: Any) -> None:
        self.process = None
        self._set_running(False)
        running = [s for s, state in self.stage_state.items() if state == "running"]
        if code == 0 and self._failed is None:
            if self._exported:
                self.status_label.setText("Done. The new persona is in the persona list.")
            # else: the last stage's own words stay (e.g. a persona of that name exists)
            self.start_button.setText("&Start")
        elif code == 130 and self._failed is None:
            for stage in running:
                self._mark(stage, "stopped")
            self.status_label.setText("Stopped. Resume carries on from the last checkpoint.")
            self.start_button.setText("&Resume")
        else:
            for stage in running:
                self._mark(stage, "failed")
            error = self._failed or TalkError(
                f"The trainer stopped unexpectedly (exit {code}).",
                hint=_last_line(self._stderr) or None, code="training_crashed")
            self.banner.show_message(error, "error", "Training")
            self.status_label.setText("Failed; fix the problem above, then Resume.")
            self.start_button.setText("&Resume")

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.process = None
            self._set_running(False)
            self.banner.show_message(TalkError(
                f"Could not start the trainer ({self.python}).", code="training_not_started"),
                "error", "Training")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for widget in (self.subreddit_edit, self.file_edit, self.base_combo, self.method_combo,
                       self.epochs_spin, self.batch_spin, self.name_edit, self.recipe_button):
            widget.setEnabled(not running)

    @property
    def running(self) -> bool:
        """Whether the trainer process is running."""
        return self.process is not None

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Closing stops the trainer at a checkpoint (Resume continues later)."""
        if self.process is not None:
            if self.stop_button.isEnabled():  # not already stopping: one SIGTERM is enough
                self.stop()
            # Saving a checkpoint of a big model takes a while; give it time, then insist.
            if not self.process.waitForFinished(60000):
                self.process.kill()
                self.process.waitForFinished(5000)
        super().closeEvent(event)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
