"""Train a persona from the window: the ``train all`` command in a worker process, watched.

Training runs in its own process (``python -m training all --progress-json``): it uses all the
cores and a lot of memory for a long time, and a crash or an out-of-memory kill there cannot take
the window down. The dialog reads its JSON progress lines: a row per stage, a progress bar, the
ETA and a live loss plot, then the evaluation's figures. Stop sends SIGTERM (the trainer saves a
checkpoint first); Resume runs the same command, which carries on from that checkpoint, and is
offered only while the run folder of the name and settings chosen holds one. What the messages
mean in words lives in ``training.progress`` (no Qt); each line is read as a
``training.messages.ProgressMessage``, and a line that claims to be one but is not is reported in
the banner (the run goes on).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
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
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.bundle import training_command_prefix
from app.widgets.banner import Banner
from engine.errors import TalkError
from training.messages import ProgressLineError, ProgressMessage
from training.progress import (
    STAGE_NAMES,
    STATE_WORDS,
    evaluate_text,
    evaluation_summary,
    read_evaluation,
    resume_point,
    stage_text,
    stages_for,
    stopped_text,
)
from training.reporter import format_duration
from training.runs import STAGES

# Base models offered, with their parameter counts (for the memory estimate).
BASES = (("microsoft/DialoGPT-small", "DialoGPT small (117M)", 124_000_000),
         ("microsoft/DialoGPT-medium", "DialoGPT medium (345M)", 355_000_000),
         ("microsoft/DialoGPT-large", "DialoGPT large (762M)", 774_000_000),
         ("starter", "Starter: SmolLM2-135M (offline)", 135_000_000))
# The default base: the first of these on this computer (the bundled starter always is).
PREFERRED_BASES = ("microsoft/DialoGPT-medium", "microsoft/DialoGPT-small",
                   "microsoft/DialoGPT-large", "starter")
PULL_PLACE = "Tools → Models and personas…, Pull"
# The trainer's hints name command-line flags and run folders; the dialog names its own fields.
DIALOG_HINTS = {
    "training_config_mismatch": "To resume it, set Base model, Method, Epochs and Batch size "
                                "back to that run's; to train from the start, give the persona "
                                "another Name.",
    "run_source_mismatch": "Give the persona another Name to train on a different subreddit.",
    "base_model_missing": f"Pull it first ({PULL_PLACE}), or connect to the internet so the "
                          "trainer can download it.",
    "max_tokens_too_long": "Choose another Base model.",
}
OUT_OF_MEMORY_HINT = "Choose LoRA, a smaller Batch size or a smaller Base model, then Start again."


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


def base_on_disk(ref: str) -> bool:
    """Whether the base ``ref`` (Hub id, persona id or folder) is on this computer."""
    from engine.models.availability import has_weights, hub_snapshot, weights_present
    from engine.models.persona import PERSONA_FILE, load_persona
    from engine.models.registry import find_persona

    ref = ref.strip()
    if not ref:
        return False
    path = Path(ref).expanduser()
    try:
        if path.is_dir():
            if (path / PERSONA_FILE).is_file():
                return weights_present(load_persona(path))
            return (path / "config.json").is_file() and has_weights(path)
        if "/" in ref and not ref.startswith((".", "~", "/")):
            snapshot = hub_snapshot(ref)
            return snapshot is not None and has_weights(snapshot)
        return weights_present(find_persona(ref))
    except Exception:  # a half-typed or odd reference (no such persona, bad id): not here
        return False


def base_note(ref: str, label: str) -> str:
    """What to do before a run from ``ref``, which is not on this computer."""
    from engine.models.catalogue import catalogue

    ref = ref.strip()
    if not ref:
        return "Choose a base model."
    if ref.startswith((".", "~", "/")):
        if Path(ref).expanduser().exists():
            return f"{ref} is not a model folder: it needs a config.json and weight files."
        return f"There is no model folder at {ref}."
    if "/" in ref:
        size = next((f" (about {e.size_mb} MB)" for e in catalogue() if e.repo_id == ref), "")
        return (f"{label} is not on this computer yet: pull it first ({PULL_PLACE}), or the "
                f"trainer downloads it{size} when the run starts, which needs the internet.")
    return (f"No installed persona or model called {ref!r}: pull it first ({PULL_PLACE}), or "
            "type a model folder or a Hub id.")


def dialog_error(error: TalkError) -> TalkError:
    """``error`` with a hint that names what the dialog lets a person change."""
    hint = DIALOG_HINTS.get(error.code or "")
    if error.code == "base_model_missing" and "models pull" not in (error.hint or ""):
        hint = None  # a folder or persona not found: the trainer's hint says what was tried
    if error.code == "internal_error":
        hint = OUT_OF_MEMORY_HINT if "out of memory" in error.message.lower() else (
            "Start it again; it carries on where it stopped.")
    return TalkError(error.message, hint=hint or error.hint, code=error.code) if hint else error


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
        self._bad_line: ProgressLineError | None = None  # the first unreadable message of a run
        self.stage_state: dict[str, str] = {}
        self._exported = False
        self._total_steps: int | None = None  # of the training seen last (a stop shows it)
        self.extra_args: list[str] = []  # appended to the command (tests: a few tiny steps)
        self._build()
        self._update_estimate()
        self._update_base_note()
        self._show_stages()
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
        self.browse_button = browse = QPushButton("&Browse…", source_box)
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
        self.file_radio.toggled.connect(self._show_stages)

        model_box = QGroupBox("How", self)
        self.base_combo = QComboBox(model_box)
        self.base_combo.setEditable(True)  # a folder or another Hub id may be typed
        for ref, name, _ in BASES:
            self.base_combo.addItem(name, ref)
        self.base_combo.setCurrentIndex(self._default_base_index())
        self.base_note = QLabel(model_box)  # says when the base must be pulled first
        self.base_note.setWordWrap(True)
        self.base_note.setAccessibleName("Base model note")
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
        self._form = form = QFormLayout(model_box)
        for text, widget in (("Base &model:", self.base_combo), ("", self.base_note),
                             ("Me&thod:", self.method_combo),
                             ("&Epochs:", self.epochs_spin), ("Batch si&ze:", self.batch_spin),
                             ("&Name:", self.name_edit),
                             ("Speaks in the &voice of:", self.voice_combo),
                             ("Memory:", self.memory_label)):
            if not text:  # the note under the base: its own row, gone when it says nothing
                form.addRow("", widget)
                continue
            label = QLabel(text, model_box)
            label.setBuddy(widget)
            form.addRow(label, widget)
        for signal in (self.base_combo.currentIndexChanged, self.method_combo.currentIndexChanged,
                       self.batch_spin.valueChanged):
            signal.connect(self._update_estimate)
        self.base_combo.currentTextChanged.connect(self._update_base_note)
        # What decides the run folder and whether its checkpoint fits: Resume or Start.
        for signal in (self.name_edit.textChanged, self.base_combo.currentTextChanged,
                       self.method_combo.currentIndexChanged, self.epochs_spin.valueChanged,
                       self.batch_spin.valueChanged):
            signal.connect(self._update_start_button)

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
        self.eval_view = QPlainTextEdit(progress_box)  # the evaluate stage's figures
        self.eval_view.setReadOnly(True)
        self.eval_view.setAccessibleName("Evaluation")
        self.eval_view.setMaximumHeight(150)
        self.eval_view.hide()
        progress = QVBoxLayout(progress_box)
        progress.addLayout(stages)
        bar_row = QHBoxLayout()
        bar_row.addWidget(self.progress_bar, 1)
        bar_row.addWidget(self.eta_label)
        progress.addLayout(bar_row)
        progress.addWidget(self.status_label)
        progress.addWidget(self.loss_plot)
        progress.addWidget(self.eval_view)

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
        self.resize(640, 760)

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
        self.base_combo.setCurrentIndex(self.base_combo.findData("microsoft/DialoGPT-medium"))
        self.name_edit.setText("Berkeley")

    def _default_base_index(self) -> int:
        """The first preferred base that is on this computer (the starter always is)."""
        for ref in PREFERRED_BASES:
            if base_on_disk(ref):
                return self.base_combo.findData(ref)
        return self.base_combo.findData("starter")

    def _update_base_note(self) -> None:
        """Say, before anything starts, when the base model is not on this computer."""
        ref = self.base_ref()
        missing = not base_on_disk(ref)
        label = next((text for r, text, _ in BASES if r == ref), ref)
        self.base_note.setText(base_note(ref, label) if missing else "")
        self._form.setRowVisible(self.base_note, missing)

    def _show_stages(self) -> None:
        """Stages the chosen source needs, unmarked; the others greyed out (not needed)."""
        if self.process is not None:
            return
        self._stages = stages_for(self.file_radio.isChecked())
        for stage in STAGES:
            self._mark(stage, "" if stage in self._stages else "unused")

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
        from engine.tts.builtin import pulled_builtin_voices
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
        args = [*training_command_prefix(), "all", "--progress-json", *self._settings(name)]
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

    def _settings(self, name: str) -> list[str]:
        """The arguments that decide the run folder and what is trained."""
        return ["--name", name, "--base", self.base_ref(),
                "--method", self.method_combo.currentData(),
                "--epochs", str(self.epochs_spin.value()),
                "--batch-size", str(self.batch_spin.value())]

    def resume_step(self) -> int | None:
        """The step a start with these settings carries on from; None: a new run starts."""
        name = self.name_edit.text().strip()
        if not name:
            return None
        try:
            from training.cli import build_parser
            from training.runs import run_folder, train_config

            # The trainer's own parser and config: the run it will resume is the one checked.
            args = build_parser().parse_args(["all", "--subreddit", "x", *self._settings(name),
                                              *self.extra_args])
            run = run_folder(name)
            return resume_point(run, train_config(args, run))
        except (TalkError, ImportError, SystemExit):  # not a valid run (yet): nothing to resume
            return None

    def _update_start_button(self) -> None:
        """Resume only when the run of this name and these settings has a checkpoint."""
        if self.process is not None:
            return
        step = self.resume_step()
        self.start_button.setText("&Start" if step is None else "&Resume")
        self.start_button.setToolTip("" if step is None else
                                     f"Carries on from the checkpoint at step {step}.")

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
        self._bad_line = None
        self._exported, self._total_steps = False, None
        self._show_stages()  # a resume shows this run's stages, not the last one's
        self.eval_view.clear()
        self.eval_view.hide()
        self._bar_text("%p%", 0, 100, 0)
        self.eta_label.setText("")
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
        # Connected to the running process only; finished (which clears it) comes after the
        # last output. The stubs do not give QByteArray the buffer protocol: data() for bytes().
        assert self.process is not None
        output = self.process.readAllStandardOutput().data()
        self.feed(bytes(output).decode("utf-8", "replace"))

    def feed(self, output: str) -> None:
        """Read the trainer's output: each whole line that is a message is shown."""
        self._buffer += output
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            if not line.startswith("{"):
                continue  # a library's chatter, not a message
            try:
                message = ProgressMessage.from_json(line)
            except ProgressLineError as err:
                self._unreadable(err)
                continue
            self.handle(message)

    def _unreadable(self, error: ProgressLineError) -> None:
        """A line that is not a valid message: say so once a run, in the banner; go on."""
        if self._bad_line is None and self._failed is None:
            self._bad_line = error
            self.banner.show_message(TalkError(
                f"A progress message could not be read: {error.message}",
                hint="Training goes on; this window may show less of it. The app and the "
                     "trainer may be of different versions.", code=error.code),
                "warning", "Training")

    def _read_stderr(self) -> None:
        assert self.process is not None  # as in _read_stdout
        text = bytes(self.process.readAllStandardError().data()).decode("utf-8", "replace")
        self._stderr = (self._stderr + text)[-4000:]  # the tail explains a crash

    def handle(self, message: ProgressMessage) -> None:
        """Show one progress message of the trainer."""
        stage, event = message.stage, message.event
        if event == "error":
            self._failed = TalkError(message.message or "Training failed.", hint=message.hint,
                                     code=message.code)
            return
        if stage not in self._stages:  # "all", or a stage this source does not need
            if message.text:
                self.status_label.setText(message.text)
            return
        if event == "start":
            self._mark(stage, "running")
            self._bar_text("%p%", 0, 0, 0)  # busy until the stage reports numbers
            self.eta_label.setText("")
            self.status_label.setText(f"{STAGE_NAMES[stage]}: {message.text or ''}")
        elif event == "progress":
            self._progress(stage, message)
        elif event in ("done", "skip"):
            self.eta_label.setText("")
            self.status_label.setText(f"{STAGE_NAMES[stage]}: {message.text or ''}")
            if message.status == "cancelled":
                self._mark(stage, "stopped")
                step, total = message.step or 0, self._total_steps or 0
                self._bar_text(stopped_text(step, total), 0, max(1, total), min(step, total))
                return
            self._bar_text("%p%", 0, 1, 1)
            shown = False
            if stage == "evaluate":
                shown = self._show_evaluation(message.figures)
            # A skip is done work kept (a dataset, a fine-tune); not so a persona that exists
            # already, or an evaluation left out for want of validation dialogues.
            skipped = event == "skip" and (message.status == "exists" or (
                stage == "evaluate" and not shown))
            self._mark(stage, "skipped" if skipped else "done")
            if stage == "export" and event == "done" and message.persona:
                self._exported = True
                self.persona_created.emit(message.persona)

    def _progress(self, stage: str, message: ProgressMessage) -> None:
        if message.step is not None:  # training
            total = message.total_steps or 0
            self._total_steps = total or None
            self._bar_text("%p%", 0, max(1, total), message.step)
            if message.loss is not None:
                self.loss_plot.add(message.step, message.loss)
            eta = message.eta_s
            self.eta_label.setText(f"ETA {format_duration(eta)}" if eta is not None else "")
        elif message.phase is not None:  # evaluate: loading, scoring, sample replies
            self.status_label.setText(f"{STAGE_NAMES[stage]}: {evaluate_text(message)}")
            total = message.total or 0
            loading = message.phase == "load"
            self._bar_text("%p%", 0, 0 if loading else max(1, total),
                           0 if loading else message.done or 0)
        elif message.total:
            self._bar_text("%p%", 0, message.total, message.done or 0)

    def _bar_text(self, text: str, low: int, high: int, value: int) -> None:
        """The progress bar's range, value and words (high 0: busy)."""
        self.progress_bar.setRange(low, high)
        self.progress_bar.setValue(value)
        self.progress_bar.setFormat(text)

    def _show_evaluation(self, figures: Mapping[str, Any] | None) -> bool:
        """Show the evaluate stage's figures (or, when it was skipped, the saved ones)."""
        if figures is None:
            try:
                from training.runs import run_folder

                figures = read_evaluation(run_folder(self.name_edit.text().strip()))
            except TalkError:
                figures = None
        if not figures:
            return False
        self.eval_view.setPlainText(evaluation_summary(figures))
        self.eval_view.show()
        return True

    def _mark(self, stage: str, state: str) -> None:
        self.stage_state[stage] = state
        label = self.stage_labels[stage]
        label.setText(stage_text(stage, state))
        label.setEnabled(state != "unused")
        label.setToolTip(f"{STAGE_NAMES[stage]}: {STATE_WORDS.get(state, state)}")
        font = label.font()
        font.setBold(state == "running")
        label.setFont(font)

    def _finished(self, code: int, _status: Any) -> None:
        self.process = None
        self._set_running(False)
        self.eta_label.setText("")
        running = [s for s, state in self.stage_state.items() if state == "running"]
        if code == 0 and self._failed is None:
            if self.progress_bar.maximum() == 0:
                self._bar_text("%p%", 0, 1, 1)
            if self._exported:
                self.status_label.setText("Done. The new persona is in the persona list.")
            # else: the last stage's own words stay (e.g. a persona of that name exists)
        elif code == 130 and self._failed is None:
            for stage in running:
                self._mark(stage, "stopped")
            if self.progress_bar.format() == "%p%":  # not a training stop (that says its step)
                self._bar_text(stopped_text(None, None), 0, 1, 0)
            step = self.resume_step()
            self.status_label.setText(
                "Stopped. Start carries on where it stopped." if step is None else
                f"Stopped. Resume carries on from the checkpoint at step {step}.")
        else:
            for stage in running:
                self._mark(stage, "failed")
            error = self._failed or TalkError(
                f"The trainer stopped unexpectedly (exit {code}).",
                hint=_last_line(self._stderr) or None, code="training_crashed")
            self.banner.show_message(dialog_error(error), "error", "Training")
            where = STAGE_NAMES.get(running[0]) if running else None
            self._bar_text(f"Failed at {where}" if where else "Failed", 0, 1, 0)
            self.status_label.setText("Failed: change what the message above names, then "
                                      "start again.")
        self._update_start_button()

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.process = None
            self._set_running(False)
            self._bar_text("Failed", 0, 1, 0)
            self.banner.show_message(TalkError(
                f"Could not start the trainer ({self.python}).", code="training_not_started"),
                "error", "Training")
            self.status_label.setText("Not started.")
            self._update_start_button()

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for widget in (self.subreddit_radio, self.file_radio, self.subreddit_edit,
                       self.file_edit, self.browse_button, self.base_combo, self.method_combo,
                       self.epochs_spin, self.batch_spin, self.name_edit, self.voice_combo,
                       self.recipe_button):
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
