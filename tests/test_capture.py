"""Real capture through PulseAudio's virtual microphone, and the no-microphone path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.audio.capture import Microphone, input_devices
from engine.audio.listener import Listener, PushToTalk
from tests.speech import SENTENCES, speak, word_error_rate

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.audio
def test_devices_are_listed(pulse):
    devices = input_devices()
    assert devices and any(d.is_default for d in devices)


@pytest.mark.audio
def test_hands_free_hears_words_played_into_the_virtual_microphone(pulse, tmp_path):
    from engine.asr import open_recognizer

    wav = speak(SENTENCES[4], tmp_path, rate=48000, channels=2)
    mic = Microphone()
    mic.start()
    levels = []
    listener = Listener(on_level=levels.append)
    player = pulse.play(wav)
    try:
        utterance = next(listener.hands_free(mic.blocks()))
    finally:
        mic.stop()
        player.wait(timeout=30)
    text = open_recognizer("faster-whisper", device="cpu").transcribe(utterance).text
    print("heard:", text)
    assert word_error_rate(SENTENCES[4], text) <= 0.35
    assert max(levels) > -40 and min(levels) < -60  # the meter saw speech and silence


@pytest.mark.audio
def test_push_to_talk_records_until_release(pulse, tmp_path):
    wav = speak(SENTENCES[1], tmp_path, rate=48000, channels=2)
    ptt = PushToTalk(Microphone(), Listener())
    ptt.press()
    pulse.play(wav).wait(timeout=30)
    audio = ptt.release()
    assert ptt.error is None
    assert 1.0 < len(audio) / 16000 < 6.0
    assert np.abs(audio).max() > 0.05


def test_no_sound_server_means_a_clear_no_microphone_error(tmp_path):
    env = {**os.environ, "PULSE_SERVER": f"unix:{tmp_path}/nothing-here",
           "TTT_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, "-m", "engine", "listen"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "No microphone found" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.audio
def test_listen_command_hands_free_once(pulse, tmp_path):
    # The sentence tiny.en recognises best from espeak-ng: this tests the listen path,
    # not the recognizer (its accuracy is measured in test_asr).
    wav = speak(SENTENCES[1], tmp_path, rate=48000, channels=2)
    env = {**os.environ, "TTT_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "engine", "listen", "--hands-free", "--once"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # "Listening" comes once the model is loaded and the microphone is open.
    out, err = pulse.play_when_ready(proc, wav, marker="Listening", stream="stderr")
    assert proc.returncode == 0, err
    assert out.startswith("you said: ")
    assert word_error_rate(SENTENCES[1], out.removeprefix("you said: ")) <= 0.35, out


def test_transcribe_command(tmp_path):
    good = speak(SENTENCES[1], tmp_path)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    env = {**os.environ, "TTT_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, "-m", "engine", "transcribe", str(good), str(empty)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1  # one file failed
    assert "Please call me back tomorrow morning." in result.stdout
    assert "empty.wav is empty (0 bytes)" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.audio
def test_device_lost_mid_recording_keeps_what_was_captured(pulse):
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "device_loss_script.py")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    code, kept = result.stdout.split()
    assert code == "device_lost"
    assert float(kept) > 1.0  # the speech before the loss is still there
