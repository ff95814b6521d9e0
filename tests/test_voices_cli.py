"""``voices``, ``say`` and ``chat --speak`` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.speech import SENTENCES, speak

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="needs espeak-ng and sox (installed by the set-up)")


@pytest.fixture
def quick_tts(quick_pocket_config) -> Path:
    """Tiny pocket-tts model (in a Hub cache, as pulled) ending each piece after ~9 frames."""
    return quick_pocket_config


@pytest.fixture(scope="module")
def sample_wav(tmp_path_factory) -> Path:
    """Eleven seconds of one espeak-ng voice, as one WAV file."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("sample")
    parts = [sf.read(str(speak(s, folder, pitch=20)), dtype="float32")[0] for s in SENTENCES]
    path = folder / "grandpa.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path


def cli(*args: str, data: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT,
                          env={**os.environ, "TTT_DATA_DIR": str(data), **env},
                          capture_output=True, text=True, timeout=300)


def test_enroll_list_say_to_file_and_delete(tmp_path, sample_wav, quick_tts):
    data = tmp_path / "data"
    added = cli("voices", "add", "Grandpa", "--consent", "Tester",
                "--file", str(sample_wav), data=data)
    assert added.returncode == 0, added.stderr
    assert "ok   one_speaker" in added.stdout and "Enrolled the voice Grandpa" in added.stdout
    listed = cli("voices", "list", data=data)
    assert "Grandpa" in listed.stdout and "good sample" in listed.stdout
    out = tmp_path / "said.wav"
    said = cli("say", "--voice", "Grandpa", "--tts-model", str(quick_tts), "-o", str(out),
               "Hello there, 3 cats!", data=data)
    assert said.returncode == 0, said.stderr
    import soundfile as sf

    info = sf.info(str(out))
    assert info.samplerate == 24000 and info.frames >= 1920
    # The cloned voice's state was computed once for this model and cached beside it.
    assert len(list((data / "voices" / "grandpa").glob("pocket_state.tiny.*.safetensors"))) == 1
    deleted = cli("voices", "delete", "Grandpa", data=data)
    assert deleted.returncode == 0 and not (data / "voices" / "grandpa").exists()


def test_enrolling_needs_consent_which_is_stored_and_listed(tmp_path, sample_wav):
    data = tmp_path / "data"
    refused = cli("voices", "add", "Grandpa", "--file", str(sample_wav), data=data)
    assert refused.returncode == 1 and "needs its speaker's consent" in refused.stderr
    assert "--consent" in refused.stderr and not (data / "voices" / "grandpa").exists()
    added = cli("voices", "add", "Grandpa", "--consent", "Tester", "--file", str(sample_wav),
                data=data)
    assert added.returncode == 0, added.stderr
    info = json.loads((data / "voices" / "grandpa" / "voice.json").read_text())
    assert info["consent"]["by"] == "Tester" and "permission" in info["consent"]["statement"]
    assert "consent confirmed by Tester on " in cli("voices", "list", data=data).stdout
    archive = tmp_path / "grandpa.zip"
    assert cli("voices", "export", "Grandpa", str(archive), data=data).returncode == 0
    imported = cli("voices", "import", str(archive), data=tmp_path / "other")
    assert "consent confirmed by Tester on " in imported.stdout, imported.stderr


def test_rejected_sample_shows_its_verdict_then_can_be_kept(tmp_path):
    import soundfile as sf

    data = tmp_path / "data"
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000 * 6, np.float32), 16000)
    refused = cli("voices", "add", "Quiet", "--consent", "Tester", "--file", str(silent), data=data)
    assert refused.returncode == 1
    assert "BAD  speech" in refused.stdout and "mostly silence" in refused.stderr
    assert "--keep-anyway" in refused.stderr and "Traceback" not in refused.stderr
    kept = cli("voices", "add", "Quiet", "--consent", "Tester",
               "--file", str(silent), "--keep-anyway", data=data)
    assert kept.returncode == 0 and "flagged" in kept.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["voices", "add", "X", "--consent", "Tester", "--file", "/nope.wav"], "No audio file at"),
    (["voices", "delete", "Nobody"], "No voice called 'Nobody'"),
    (["say", "--voice", "Nobody", "hi"], "No voice called 'Nobody'"),
    (["say", "hi", "--tts-model", "someone/not-pulled"], "Choose one of: pocket-tts"),
    (["say", "hi", "--tts-model", "pocket-tts-7m"], "models pull pocket-tts-7m"),
    (["voices", "import", "/etc/hostname"], "is not a voice archive"),
])
def test_voice_errors_are_messages(tmp_path, args, says):
    result = cli(*args, data=tmp_path / "data", HF_HUB_CACHE=str(tmp_path / "empty-hub-cache"))
    assert result.returncode == 1
    assert says in result.stderr and "Traceback" not in result.stderr


@pytest.mark.audio
def test_preview_plays_and_scores_similarity(pulse, tmp_path, sample_wav, quick_tts):
    data = tmp_path / "data"
    assert cli("voices", "add", "Grandpa", "--consent", "Tester",
               "--file", str(sample_wav), data=data).returncode == 0
    preview = cli("voices", "preview", "Grandpa", "--tts-model", str(quick_tts), data=data)
    assert preview.returncode == 0, preview.stderr
    assert "Speaker similarity of the clone to the sample:" in preview.stdout
    info = json.loads((data / "voices" / "grandpa" / "voice.json").read_text())
    assert isinstance(info["similarity"], float)


@pytest.mark.audio
def test_voices_play_plays_the_stored_sample(pulse, tmp_path, sample_wav):
    data = tmp_path / "data"
    assert cli("voices", "add", "Grandpa", "--consent", "Tester",
               "--file", str(sample_wav), data=data).returncode == 0
    played = cli("voices", "play", "Grandpa", data=data)
    assert played.returncode == 0, played.stderr
    assert "Playing the sample of Grandpa (" in played.stdout and "as enrolled" in played.stdout
    (data / "voices" / "grandpa" / "sample.wav").write_bytes(b"RIFF not a wave" * 4)
    broken = cli("voices", "play", "Grandpa", data=data)
    assert broken.returncode == 1 and "damaged sample" in broken.stderr
    assert "Traceback" not in broken.stderr


@pytest.mark.audio
def test_chat_speaks_replies(pulse, tmp_path, tiny_persona_dir, quick_tts):
    result = cli("chat", "-p", str(tiny_persona_dir), "--speak", "--tts-model", str(quick_tts),
                 "-m", "hello there", data=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "Replies are spoken in the default built-in voice (alba)" in result.stdout
    assert "bot> " in result.stdout
    # Paired with a voice, the persona speaks in it.
    paired = cli("voices", "pair", "builtin:marius", str(tiny_persona_dir), data=tmp_path / "data")
    assert paired.returncode == 0, paired.stderr
    result = cli("chat", "-p", str(tiny_persona_dir), "--speak", "--tts-model", str(quick_tts),
                 "-m", "hello there", data=tmp_path / "data")
    assert "Replies are spoken in the built-in voice marius" in result.stdout, result.stderr


def test_chat_without_voice_model_stays_text_only(tmp_path, tiny_persona_dir):
    result = cli("chat", "-p", str(tiny_persona_dir), "--speak", "--tts-model",
                 "someone/not-pulled", "-m", "hello there", data=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "is not a voice model in the catalogue" in result.stderr
    said = result.stdout + result.stderr
    assert said.lower().count("text only") == 1 and "Replies will be text only." in said
    assert "bot> " in result.stdout


@pytest.mark.parametrize(("name", "content", "says"), [
    ("empty.wav", b"", "empty.wav is empty (0 bytes)"),
    ("corrupt.wav", b"RIFF\x10\x00\x00\x00WAVEjunk" * 20, "corrupt.wav"),
])
def test_unreadable_sample_files(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)
    result = cli("voices", "add", "X", "--consent", "Tester",
                 "--file", str(path), data=tmp_path / "data")
    assert result.returncode == 1
    assert says in result.stderr and "Traceback" not in result.stderr


def test_8khz_telephone_sample_is_converted_and_checked(tmp_path):
    import soundfile as sf

    folder = tmp_path / "s"
    parts = [sf.read(str(speak(s, folder, rate=8000, pitch=20)), dtype="float32")[0]
             for s in SENTENCES]
    path = tmp_path / "phone.wav"
    sf.write(path, np.concatenate(parts), 8000)
    result = cli("voices", "add", "Phone", "--consent", "Tester",
                 "--file", str(path), data=tmp_path / "data")
    assert result.returncode == 0, result.stdout + result.stderr
    info = sf.info(str(tmp_path / "data" / "voices" / "phone" / "sample.wav"))
    assert info.samplerate == 24000


@pytest.mark.audio
def test_enroll_by_recording_from_the_microphone(pulse, tmp_path, sample_wav):
    data = tmp_path / "data"
    env = {**os.environ, "TTT_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "engine", "voices", "add", "Live", "--consent",
                             "Tester", "--record", "14s"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # "1..." is the countdown's last step; recording starts a second later.
    out, err = pulse.play_when_ready(proc, sample_wav, marker="1...", delay=1.3, timeout=60)
    assert proc.returncode == 0, out + err
    assert "Enrolled the voice Live" in out
    voice = json.loads((data / "voices" / "live" / "voice.json").read_text())
    assert voice["source"] == "recording" and voice["verdict"]["ok"], voice["verdict"]
