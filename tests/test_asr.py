"""Speech recognition with real speech (espeak-ng) and the real Whisper tiny.en weights."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine.asr import open_recognizer
from engine.audio.files import AudioFileError, load_audio
from engine.audio.listener import Listener, ListenOptions, NoSpeechError
from engine.audio.segmenter import Boundary
from tests.speech import SENTENCES, speak, speech_array, word_error_rate

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="needs espeak-ng and sox (installed by the set-up)")


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="module")
def tiny_en():
    return open_recognizer("faster-whisper", device="cpu")


def test_word_error_rate_helper():
    assert word_error_rate("the cat sat", "The cat sat.") == 0
    assert word_error_rate("the cat sat", "the dog sat") == pytest.approx(1 / 3)
    assert word_error_rate("the cat sat", "cat") == pytest.approx(2 / 3)


def test_bundled_tiny_en_recognises_espeak_sentences(tiny_en, speech_dir):
    errors = []
    for sentence in SENTENCES:
        transcript = tiny_en.transcribe(speech_array(sentence, speech_dir))
        wer = word_error_rate(sentence, transcript.text)
        print(f"WER {wer:.2f}  {sentence!r} -> {transcript.text!r}")
        errors.append(wer)
        assert transcript.language == "en" and transcript.duration > 1
    mean = sum(errors) / len(errors)
    print(f"mean WER {mean:.3f}")
    assert mean <= 0.35


def test_vad_finds_speech_where_speech_is(speech_dir):
    speech = speech_array(SENTENCES[0], speech_dir)
    silence = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([silence, speech, silence, silence, speech, silence])
    events = []
    listener = Listener()
    blocks = np.array_split(audio, len(audio) // 700)  # odd-sized blocks, like a device's
    utterances = list(listener.hands_free(blocks, on_speech=events.append))
    assert len(utterances) == 2
    assert events == [Boundary.STARTED, Boundary.ENDED] * 2
    for utterance in utterances:
        # The utterance covers the sentence (pre-roll included) but not the seconds of silence.
        assert 0.8 * len(speech) <= len(utterance) <= len(speech) + 1.5 * 16000


def test_silence_and_noise_are_not_speech():
    rng = np.random.default_rng(0)
    quiet = [np.zeros(480, dtype=np.float32)] * 200
    hum = [(0.001 * rng.standard_normal(480)).astype(np.float32) for _ in range(200)]
    assert list(Listener().hands_free(quiet)) == []
    assert list(Listener(ListenOptions(sensitivity=3)).hands_free(hum)) == []


def test_push_to_talk_trims_and_refuses_silence(speech_dir):
    speech = speech_array(SENTENCES[1], speech_dir)
    padded = np.concatenate([np.zeros(32000, np.float32), speech, np.zeros(32000, np.float32)])
    trimmed = Listener().trim(padded)
    assert len(trimmed) < len(padded) - 48000
    assert len(trimmed) >= 0.8 * len(speech)
    with pytest.raises(NoSpeechError) as caught:
        Listener().trim(np.zeros(48000, dtype=np.float32))
    assert caught.value.message == "No speech heard."


@pytest.mark.parametrize(("rate", "channels"), [(48000, 2), (22050, 1), (8000, 1)])
def test_files_of_any_rate_and_channels_become_16k_mono(speech_dir, rate, channels):
    path = speak(SENTENCES[2], speech_dir, rate=rate, channels=channels)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16000 - len(speech_array(SENTENCES[2], speech_dir)) / 16000) < 0.05


def test_mp3_through_ffmpeg(speech_dir, tiny_en):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    import subprocess

    wav = speak(SENTENCES[3], speech_dir)
    mp3 = speech_dir / "s.mp3"
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(wav), str(mp3)], check=True)
    text = tiny_en.transcribe(load_audio(mp3)).text
    assert word_error_rate(SENTENCES[3], text) <= 0.35


@pytest.mark.parametrize(("content", "name", "code"), [
    (b"", "empty.wav", "audio_file_empty"),
    (b"RIFF\x00\x00garbage" * 10, "corrupt.wav", "audio_file_unreadable"),
    (None, "missing.wav", "audio_file_missing"),
])
def test_bad_files_get_clear_errors(tmp_path, content, name, code):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioFileError) as caught:
        load_audio(path)
    assert caught.value.code == code and name in caught.value.message


def test_openai_whisper_backend_loads_a_checkpoint_file(tmp_path, speech_dir):
    """A tiny random openai-whisper model: proves loading, options and the call shape."""
    whisper = pytest.importorskip("whisper")
    import dataclasses

    import torch

    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
        n_vocab=51864, n_text_ctx=64, n_text_state=64, n_text_head=2, n_text_layer=1)
    torch.manual_seed(0)
    model = whisper.model.Whisper(dims)
    path = tmp_path / "tiny-random.pt"
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    recognizer = open_recognizer("whisper", model=str(path), device="cpu", language="en")
    assert recognizer.device == "cpu"
    transcript = recognizer.transcribe(speech_array(SENTENCES[0], speech_dir)[:16000])
    assert isinstance(transcript.text, str) and transcript.language == "en"
    assert transcript.duration == pytest.approx(1.0)


def test_missing_whisper_size_says_how_to_get_it(monkeypatch, tmp_path):
    pytest.importorskip("whisper")
    from engine.errors import ModelNotAvailableError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(ModelNotAvailableError) as caught:
        open_recognizer("whisper", model="small.en", device="cpu")
    assert "not downloaded" in caught.value.message


def test_openai_whisper_runs_the_bundled_tiny_en_like_faster_whisper(tiny_en, speech_dir):
    """The CTranslate2 weights converted for openai-whisper recognise the same words."""
    pytest.importorskip("whisper")
    recognizer = open_recognizer("whisper", device="cpu", language="en")
    errors = []
    for sentence in SENTENCES:
        audio = speech_array(sentence, speech_dir)
        text = recognizer.transcribe(audio).text
        print(f"{sentence!r} -> whisper {text!r}, faster {tiny_en.transcribe(audio).text!r}")
        errors.append(word_error_rate(sentence, text))
    assert sum(errors) / len(errors) <= 0.35
