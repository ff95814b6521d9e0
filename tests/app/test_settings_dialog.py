"""The Settings dialog: saving, persistence, the token, device tests, keyboard reach."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QSlider,
    QWidget,
)

from app.dialogs.settings_dialog import SettingsDialog
from app.workers import WorkerPool
from engine import settings as settings_store
from engine.audio.filesource import FileMicrophone
from engine.secrets import HF_TOKEN_KEY, SERVICE
from engine.settings import Settings

RATE = 16000


def sine(seconds: float, amplitude: float = 0.5, hz: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def open_dialog(qtbot, app_data):
    """Opens a shown dialog on its own pool, its startup work (devices, keyring, CUDA) done."""

    def make(settings: Settings | None = None, **kwargs) -> SettingsDialog:
        pool = WorkerPool()
        dialog = SettingsDialog(settings if settings is not None else settings_store.load()[0],
                                pool, **kwargs)
        qtbot.addWidget(dialog)
        dialog.show()
        settle(qtbot, dialog)
        return dialog

    return make


def settle(qtbot, dialog: SettingsDialog, timeout: int = 15000) -> None:
    qtbot.waitUntil(lambda: not dialog.workers.running, timeout=timeout)


def click_ok(qtbot, dialog: SettingsDialog) -> None:
    qtbot.mouseClick(dialog.button_box.button(QDialogButtonBox.StandardButton.Ok),
                     Qt.MouseButton.LeftButton)


def tick(qtbot, box) -> None:
    """Click a check box or radio button on its indicator (its centre may be empty space)."""
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))


def settings_file(app_data):
    return app_data / "settings.json"


@pytest.fixture
def no_sound_server():
    """PortAudio re-initialised with PulseAudio pointed at nothing (as without a sound server).

    This machine has no sound card, so PortAudio then lists no device at all. The previous
    server (the session's ``pulse`` fixture, if it ran) is restored afterwards.
    """
    import sounddevice as sd

    previous = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = "unix:/nonexistent/pulse-native"
    sd._terminate()
    sd._initialize()
    yield
    if previous is None:
        os.environ.pop("PULSE_SERVER", None)
    else:
        os.environ["PULSE_SERVER"] = previous
    sd._terminate()
    sd._initialize()


def test_changes_are_saved_and_shown_after_a_restart(qtbot, open_dialog, app_data):
    dialog = open_dialog(Settings(persona="pirate", voice="me"))
    saved = []
    dialog.settings_saved.connect(saved.append)
    dialog.asr_backend_combo.setCurrentIndex(dialog.asr_backend_combo.findData("whisper"))
    dialog.asr_model_combo.setCurrentIndex(dialog.asr_model_combo.findData("small"))
    dialog.language_combo.setEditText("de")
    tick(qtbot, dialog.chat_remote_radio)
    assert dialog.remote_url_edit.isEnabled()
    dialog.remote_url_edit.setText("https://endpoint.example/generate")
    assert dialog.remote_api_combo.isEnabled() and dialog.remote_model_edit.isEnabled()
    dialog.remote_api_combo.setCurrentIndex(dialog.remote_api_combo.findData("openai"))
    dialog.remote_model_edit.setText("  pirate-7b ")
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cpu"))
    tick(qtbot, dialog.speak_check)
    dialog.sensitivity_slider.setValue(0)
    assert "lenient" in dialog.sensitivity_label.text()
    tick(qtbot, dialog.hands_free_check)
    click_ok(qtbot, dialog)

    assert dialog.result() == QDialog.DialogCode.Accepted
    expected = Settings(persona="pirate", voice="me", asr_backend="whisper", asr_model="small",
                        language="de", chat_backend="remote",
                        remote_url="https://endpoint.example/generate", remote_api="openai",
                        remote_model="pirate-7b", device="cpu",
                        speak_replies=False, sensitivity=0, hands_free=True)
    assert saved == [expected] and dialog.result_settings == expected
    data = json.loads(settings_file(app_data).read_text())
    assert data["asr_backend"] == "whisper" and data["sensitivity"] == 0
    assert data["persona"] == "pirate"  # fields the dialog does not edit survive

    # A new run of the app: load from disk and open the dialog again.
    reloaded, warning = settings_store.load()
    assert warning is None and reloaded == expected
    again = open_dialog(reloaded)
    assert again.asr_backend_combo.currentData() == "whisper"
    assert again.asr_model_combo.currentText() == "small"
    assert again.language_combo.currentText() == "de"
    assert again.chat_remote_radio.isChecked() and again.remote_url_edit.isEnabled()
    assert again.remote_url_edit.text() == "https://endpoint.example/generate"
    assert again.remote_api_combo.currentData() == "openai"
    assert again.remote_model_edit.text() == "pirate-7b"
    tick(qtbot, again.chat_local_radio)  # the server's fields are only for a server
    assert not again.remote_api_combo.isEnabled() and not again.remote_model_edit.isEnabled()
    tick(qtbot, again.chat_remote_radio)
    assert again.device_combo.currentData() == "cpu"
    assert not again.speak_check.isChecked() and again.hands_free_check.isChecked()
    assert again.sensitivity_slider.value() == 0
    assert again.chosen_settings() == expected


def test_cancel_saves_nothing(qtbot, open_dialog, app_data):
    dialog = open_dialog()
    saved = []
    dialog.settings_saved.connect(saved.append)
    dialog.hands_free_check.setChecked(True)
    qtbot.mouseClick(dialog.button_box.button(QDialogButtonBox.StandardButton.Cancel),
                     Qt.MouseButton.LeftButton)
    assert dialog.result() == QDialog.DialogCode.Rejected
    assert not settings_file(app_data).exists() and saved == []
    assert dialog.result_settings is None


def test_token_goes_to_the_keyring_never_to_the_settings_file(qtbot, open_dialog, app_data,
                                                              monkeypatch):
    import keyring

    monkeypatch.delenv("HF_TOKEN", raising=False)
    secret = "hf_dialogSecretValue123"
    dialog = open_dialog()
    assert dialog.token_status_label.text() == "No token."
    assert dialog.token_edit.echoMode() == QLineEdit.EchoMode.Password
    qtbot.keyClicks(dialog.token_edit, secret)
    qtbot.mouseClick(dialog.save_token_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.token_status_label.text()
                    == "A token is stored in the OS keyring.")
    assert keyring.get_keyring().store[(SERVICE, HF_TOKEN_KEY)] == secret
    assert dialog.token_edit.text() == ""  # the secret does not linger in the widget
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted
    for path in app_data.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert "hf_token" not in json.loads(settings_file(app_data).read_text())

    again = open_dialog()
    assert again.token_status_label.text() == "A token is stored in the OS keyring."
    qtbot.mouseClick(again.clear_token_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: again.token_status_label.text() == "No token.")
    assert (SERVICE, HF_TOKEN_KEY) not in keyring.get_keyring().store
    assert "Token removed" in again.banner.plain_text()


def test_a_typed_token_not_yet_stored_keeps_the_dialog_open(qtbot, open_dialog, app_data):
    dialog = open_dialog()
    dialog.token_edit.setText("hf_typedButNotSaved")
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.result_settings is None
    assert "Save token" in dialog.banner.plain_text()
    assert not settings_file(app_data).exists()


def test_without_a_keyring_the_token_status_says_so(qtbot, open_dialog):
    import keyring
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())  # app_data puts its own keyring back afterwards
    dialog = open_dialog()
    assert "No OS keyring" in dialog.token_status_label.text()
    assert "HF_TOKEN" in dialog.token_status_label.text()
    assert not dialog.save_token_button.isEnabled()


@pytest.mark.parametrize("url", ["", "localhost:8080", "ftp://example.com"])
def test_remote_without_a_usable_url_is_refused(qtbot, open_dialog, app_data, url):
    settings_store.save(Settings(language="fr"))
    before = settings_file(app_data).read_bytes()
    dialog = open_dialog()
    dialog.chat_remote_radio.setChecked(True)
    dialog.remote_url_edit.setText(url)
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.result_settings is None
    assert "http://" in dialog.banner.plain_text() and "not saved" in dialog.banner.plain_text()
    assert settings_file(app_data).read_bytes() == before
    # Fixing it saves.
    dialog.remote_url_edit.setText("http://127.0.0.1:8080")
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert settings_store.load()[0].remote_url == "http://127.0.0.1:8080"


def test_an_empty_language_is_refused(qtbot, open_dialog, app_data):
    dialog = open_dialog()
    dialog.language_combo.setEditText("  ")
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and "language" in dialog.banner.plain_text()
    assert not settings_file(app_data).exists()


def test_a_settings_file_that_cannot_be_written_shows_in_the_banner(qtbot, open_dialog,
                                                                    app_data):
    settings_file(app_data).mkdir(parents=True)  # root ignores chmod: a folder stops the write
    dialog = open_dialog()
    click_ok(qtbot, dialog)
    text = dialog.banner.plain_text()
    assert dialog.isVisible() and dialog.result_settings is None
    assert "Could not save the settings" in text and "Traceback" not in text


def test_microphone_test_shows_a_moving_meter_and_the_peak(qtbot, open_dialog):
    audio = np.concatenate([np.zeros(RATE // 2, np.float32), sine(3.0)])  # RMS -9 dBFS
    devices = []

    def microphone(device):
        devices.append(device)
        return FileMicrophone(audio, speed=4)

    dialog = open_dialog(microphone_factory=microphone)
    levels = []
    dialog.level_meter.set_level = lambda db, meter=dialog.level_meter: (
        levels.append(db), type(meter).set_level(meter, db))
    qtbot.mouseClick(dialog.test_mic_button, Qt.MouseButton.LeftButton)
    assert not dialog.test_mic_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.test_mic_button.isEnabled(), timeout=10000)
    assert devices == [None]  # "System default"
    assert re.fullmatch(r"Heard up to -?\d+ dBFS\.", dialog.mic_result_label.text())
    peak = int(re.search(r"-?\d+", dialog.mic_result_label.text()).group())
    assert -40 < peak <= 0 and abs(peak - -9) <= 1
    assert min(levels) < -60 and max(levels) > -40  # the meter moved from silence to sound
    assert dialog.level_meter.level > -40
    assert dialog.banner.plain_text() == ""


def test_microphone_test_of_silence_asks_about_muting(qtbot, open_dialog):
    dialog = open_dialog(microphone_factory=lambda device: FileMicrophone(
        np.zeros(RATE, np.float32), speed=4))
    dialog.test_microphone()
    qtbot.waitUntil(lambda: dialog.test_mic_button.isEnabled(), timeout=10000)
    assert dialog.mic_result_label.text() == "Silence: is the microphone muted?"


def test_closing_during_the_microphone_test_stops_it(qtbot, open_dialog):
    dialog = open_dialog(microphone_factory=lambda device: FileMicrophone(sine(5.0)))
    dialog.test_microphone()
    qtbot.wait(100)
    dialog.reject()
    # A real-time source would run 2 s; cancelled, it ends within a block or two.
    assert dialog.workers.pool.waitForDone(1000)


def test_no_sound_server_gives_device_errors_in_the_banner(qtbot, open_dialog,
                                                          no_sound_server):
    dialog = open_dialog()  # the real microphone and speaker
    assert [dialog.input_combo.itemText(i) for i in range(dialog.input_combo.count())] == [
        "System default"]
    qtbot.mouseClick(dialog.test_speaker_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.test_speaker_button.isEnabled())
    text = dialog.banner.plain_text()
    assert "No speaker found" in text and "Traceback" not in text
    assert dialog.speaker_result_label.text() == "The speaker test failed."

    qtbot.mouseClick(dialog.test_mic_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.test_mic_button.isEnabled())
    text = dialog.banner.plain_text()
    assert "No microphone found" in text and "sound server" in text
    assert "Traceback" not in text
    # The dialog still works: OK saves.
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted


def test_a_saved_device_that_is_missing_is_kept(qtbot, open_dialog, no_sound_server):
    dialog = open_dialog(Settings(input_device="USB Mic", output_device="Headphones"))
    assert dialog.input_combo.currentText() == "USB Mic (not found)"
    assert dialog.output_combo.currentText() == "Headphones (not found)"
    click_ok(qtbot, dialog)
    saved = settings_store.load()[0]
    assert (saved.input_device, saved.output_device) == ("USB Mic", "Headphones")


def test_every_input_is_keyboard_reachable(qtbot, open_dialog):
    dialog = open_dialog()
    inputs = [dialog.input_combo, dialog.output_combo, dialog.asr_backend_combo,
              dialog.asr_model_combo, dialog.language_combo, dialog.remote_url_edit,
              dialog.remote_api_combo, dialog.remote_model_edit, dialog.token_edit,
              dialog.device_combo, dialog.sensitivity_slider]
    buttons = [dialog.test_mic_button, dialog.test_speaker_button, dialog.chat_local_radio,
               dialog.chat_remote_radio, dialog.save_token_button, dialog.clear_token_button,
               dialog.speak_check, dialog.hands_free_check]
    labels = {label.buddy(): label.text() for label in dialog.findChildren(QLabel)
              if label.buddy() is not None}
    fields = [w for kind in (QComboBox, QLineEdit, QSlider) for w in dialog.findChildren(kind)]
    for widget in fields:
        if widget.parent() is not None and isinstance(widget.parent(), QComboBox):
            continue  # an editable combo's own line edit
        assert widget in labels, f"{widget.objectName() or type(widget).__name__} has no label"
    mnemonics = [re.search(r"&(\w)", text) for text in
                 [labels[w] for w in inputs] + [b.text() for b in buttons]]
    assert all(mnemonics), "every label and button has a mnemonic"
    letters = [m.group(1).lower() for m in mnemonics]
    assert len(set(letters)) == len(letters), f"mnemonics clash: {sorted(letters)}"
    # Every control is in the tab chain, in the order it appears.
    chain, widget = [], dialog.nextInFocusChain()
    while widget is not dialog and len(chain) < 500:
        chain.append(widget)
        widget = widget.nextInFocusChain()
    controls = [dialog.input_combo, dialog.test_mic_button, dialog.output_combo,
                dialog.test_speaker_button, dialog.asr_backend_combo, dialog.asr_model_combo,
                dialog.language_combo, dialog.chat_local_radio, dialog.remote_url_edit,
                dialog.remote_api_combo, dialog.remote_model_edit, dialog.token_edit,
                dialog.save_token_button, dialog.device_combo,
                dialog.speak_check, dialog.sensitivity_slider, dialog.hands_free_check]
    positions = [chain.index(w) for w in controls]
    assert positions == sorted(positions)
    for w in controls + [dialog.button_box.button(QDialogButtonBox.StandardButton.Ok)]:
        assert w.focusPolicy() & Qt.FocusPolicy.TabFocus, w


def test_keyboard_mnemonic_focuses_the_url(qtbot, open_dialog):
    dialog = open_dialog(Settings(chat_backend="remote", remote_url="http://x"))
    dialog.activateWindow()
    qtbot.waitUntil(lambda: dialog.isActiveWindow())
    qtbot.keyClick(dialog, Qt.Key.Key_U, Qt.KeyboardModifier.AltModifier)
    assert dialog.focusWidget() is dialog.remote_url_edit


def test_opens_without_arguments(qtbot, app_data):
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Settings" and dialog.chosen_settings() == Settings()
    assert isinstance(dialog.banner, QWidget) and isinstance(dialog.test_mic_button,
                                                             QAbstractButton)
    settle(qtbot, dialog)


@pytest.mark.audio
def test_speaker_tone_is_heard_by_the_microphone(qtbot, open_dialog, pulse):
    # The virtual microphone is the virtual speaker's monitor: the speaker test's tone is what
    # the microphone test hears.
    dialog = open_dialog()
    names = [dialog.output_combo.itemText(i) for i in range(dialog.output_combo.count())]
    assert len(names) > 1, names  # the sound server's devices are listed
    dialog.test_microphone()
    # The tone (0.6 s) must fall inside the 2 s recording: give the worker time to open the
    # microphone first (under load that took longer than 0.2 s and the tone was missed).
    qtbot.wait(800)
    dialog.test_speaker()
    qtbot.waitUntil(lambda: dialog.test_mic_button.isEnabled()
                    and dialog.test_speaker_button.isEnabled(), timeout=10000)
    assert dialog.banner.plain_text() == ""
    assert dialog.speaker_result_label.text().startswith("Played a 440 Hz tone")
    peak = int(re.search(r"-?\d+", dialog.mic_result_label.text()).group())
    print("microphone test:", dialog.mic_result_label.text())
    assert peak > -40, dialog.mic_result_label.text()
