"""Whisper must not invent words: silence, noise and tones give nothing; speech keeps its words.

Through the real recognizers with the bundled Whisper tiny.en. Every silence, noise and tone clip
below made tiny.en write something without the guard ("you", ". . .", "Beep beep ...", "You",
"Oh", a looped sentence); ``benchmarks/asr_guard.py`` prints both side by side.
"""

from __future__ import annotations

import shutil
import time
import warnings

import numpy as np
import pytest

from engine.asr import Segment, guard, open_recognizer
from engine.audio.files import AudioFileError
from engine.cli.main import main
from tests import real_speech
from tests.speech import SENTENCES, speech_array, word_error_rate

RATE = 16000
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs espeak-ng and sox (installed by the set-up)")
needs_real_speech = pytest.mark.skipif(not real_speech.available(),
                                       reason=real_speech.SKIP_REASON)


# Clips (also used by benchmarks/asr_guard.py). Levels are RMS in dBFS.

def _at(signal: np.ndarray, dbfs: float) -> np.ndarray:
    return (signal / np.sqrt(np.mean(np.square(signal))) * 10 ** (dbfs / 20)).astype(np.float32)


def _pink(samples: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    return np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(len(spectrum)), 1)), samples)


def _tones(seconds: float, *freqs: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.sum([np.sin(2 * np.pi * f * t) for f in freqs], axis=0)


def _sweep(seconds: float, low: float = 100, high: float = 4000) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.sin(2 * np.pi * (low * t + (high - low) / seconds * t * t / 2))


def _melody(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(RATE // 4) / RATE
    envelope = np.minimum(1, np.minimum(t * 50, (0.25 - t) * 20))
    notes = [envelope * sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 2, 3))
             for f in rng.choice([261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9], 4 * 60)]
    return np.concatenate(notes)[:int(seconds * RATE)]


def noise_clips() -> dict[str, np.ndarray]:
    """Noise that made tiny.en write ". . .", "you" or a looped sentence without the guard."""
    rng = np.random.default_rng(0)
    return {
        "white noise -60 dBFS, 10 s": _at(rng.standard_normal(10 * RATE), -60),
        "white noise -50 dBFS, 3 s": _at(rng.standard_normal(3 * RATE), -50),
        "pink noise -40 dBFS, 10 s": _at(_pink(10 * RATE, rng), -40),
        "pink noise -10 dBFS, 30 s": _at(_pink(30 * RATE, np.random.default_rng(0)), -10),
    }


def tone_clips() -> dict[str, np.ndarray]:
    """Music-like sounds the VAD calls speech; each made tiny.en write words without the guard."""
    return {
        "440 Hz -20 dBFS, 2 s": _at(_tones(2, 440), -20),
        "sweep -6 dBFS, 2 s": _at(_sweep(2), -6),
        "sweep -40 dBFS, 30 s": _at(_sweep(30), -40),
        "C major chord -20 dBFS, 30 s": _at(_tones(30, 261.6, 329.6, 392.0), -20),
        "melody -12 dBFS, 1 s": _at(_melody(1), -12),
    }


def real_clips() -> list[tuple[str, str, np.ndarray]]:
    """(name, transcript, audio) of the pocketsphinx-testdata men with transcripts."""
    clips = []
    for folder, listing in (("librivox", "transcription"), ("cards", "cards.transcription")):
        for line in (real_speech.DATA / folder / listing).read_text().splitlines():
            if "(" not in line:
                continue
            words, name = line.rsplit("(", 1)
            reference = words.replace("<s>", "").replace("</s>", "").strip()
            path = real_speech.DATA / folder / f"{name.strip(' )')}.wav"
            clips.append((f"{folder}/{path.stem}", reference, real_speech._read(path)))
    return clips


@pytest.fixture(scope="module")
def tiny_en():
    return open_recognizer("faster-whisper", device="cpu")


@pytest.fixture
def whisper_calls(tiny_en, monkeypatch):
    """How many times the recognizer ran Whisper itself."""
    calls = []
    decode = tiny_en._model.transcribe

    def counted(*args, **kwargs):
        calls.append(len(args[0]) / RATE)
        return decode(*args, **kwargs)

    monkeypatch.setattr(tiny_en._model, "transcribe", counted)
    return calls


def _no_words(transcript) -> None:
    assert transcript.text == "" and transcript.segments == ()


# The checks, as pure logic.

@pytest.mark.parametrize(("samples", "code"), [
    (np.array([0.1, np.nan, 0.2], np.float32), "audio_not_finite"),
    (np.array([0.1, np.inf, -np.inf], np.float32), "audio_not_finite"),
    (np.array([1e300, 0.0]), "audio_not_finite"),  # float64 that overflows float32
    (np.zeros(0, np.float32), "audio_empty"),
    (np.zeros((100, 2), np.float32), "audio_not_mono"),
])
def test_check_audio_refuses_what_whisper_cannot_hear(samples, code):
    with pytest.raises(AudioFileError) as caught:
        guard.check_audio(samples)
    assert caught.value.code == code
    if code == "audio_not_finite":
        assert "not numbers (NaN or infinity)" in caught.value.message and caught.value.hint


def test_check_audio_changes_nothing_else():
    loud = np.array([2.5, -3.0, 0.25, 0.0])  # out of [-1, 1]: kept, not clipped or scaled
    checked = guard.check_audio(loud)
    assert checked.dtype == np.float32 and checked.tolist() == [2.5, -3.0, 0.25, 0.0]


def _frames(*parts: tuple[bool, int]) -> list[bool]:
    return [v for value, count in parts for v in [value] * count]


def test_speech_regions_from_vad_verdicts():
    n = 480  # samples per 30 ms frame
    options = guard.GuardOptions(pad_s=0.06, merge_gap_s=0.3, min_speech_s=0.15)
    assert guard.speech_regions(_frames((False, 100)), 100 * n, options) == []
    # Four voiced frames (0.12 s, what fresh noise gives) are not speech; five are.
    assert guard.speech_regions(_frames((False, 50), (True, 4), (False, 50)), 104 * n,
                                options) == []
    assert guard.speech_regions(_frames((False, 50), (True, 5), (False, 50)), 105 * n,
                                options) == [(48 * n, 57 * n)]
    # A pause of up to 0.3 s stays inside one region; a longer one splits it.
    assert guard.speech_regions(_frames((False, 20), (True, 5), (False, 10), (True, 5),
                                        (False, 20)), 60 * n, options) == [(18 * n, 42 * n)]
    assert guard.speech_regions(_frames((False, 20), (True, 5), (False, 30), (True, 5),
                                        (False, 20)), 80 * n, options) == [(18 * n, 27 * n),
                                                                          (53 * n, 62 * n)]
    # Speech up to the end keeps the last part frame no verdict covered.
    assert guard.speech_regions(_frames((False, 10), (True, 10)), 20 * n + 100,
                                options) == [(8 * n, 20 * n + 100)]


def test_times_in_the_cut_audio_map_back_to_the_recording():
    speech = guard.Speech(np.zeros(3 * RATE, np.float32), ((RATE, 2 * RATE),
                                                            (10 * RATE, 12 * RATE)))
    assert speech.original_time(0.5) == pytest.approx(1.5)
    assert speech.original_time(1.5) == pytest.approx(10.5)
    assert speech.original_time(3.0) == pytest.approx(12.0)


# (text, no_speech_prob, avg_logprob, compression_ratio) as tiny.en wrote them.
@pytest.mark.parametrize(("text", "no_speech", "logprob", "ratio", "reason"), [
    ("you", 0.95, -0.71, 0.27, "one doubtful word"),  # 30 s of digital silence
    ("Oh", 0.87, -0.90, 0.20, "one doubtful word"),  # a melody
    (". .", 0.94, -0.27, 4.54, "no words"),  # white noise at -60 dBFS
    ("!!!!!!!!", 0.50, -0.30, 9.0, "no words"),  # NaN samples, before check_audio
    ("I'm going to go back to the next one.", 0.96, -0.30, 11.06, "repetition"),  # pink noise
    ("I'm not sure if I'm going to be there.", 0.60, -1.86, 0.86, "failed decode"),  # a sweep
    ("Thank you.", 0.70, -1.20, 0.56, "no speech"),  # Whisper's own rule
    ("you you you you you", 0.30, -0.40, 1.5, "one word over and over"),
    ("Yes.", 0.63, -0.72, 0.33, None),  # real words, their highest no-speech figures
    ("No, no, no.", 0.75, -0.55, 0.73, None),
    ("Go, go, go, go.", 0.49, -0.59, 1.0, None),
    ("5 5", 0.58, -0.56, 0.27, None),
    ("hello", 0.07, -1.32, 0.38, None),  # in pink noise at 0 dB SNR: the lowest log-prob
])
def test_invented_segments(text, no_speech, logprob, ratio, reason):
    assert guard.invented(text, no_speech_prob=no_speech, avg_logprob=logprob,
                          compression_ratio=ratio) == reason
    assert guard.invented(text, no_speech_prob=no_speech, avg_logprob=logprob,
                          compression_ratio=ratio, options=guard.OFF) is None


def test_one_word_per_window_is_a_loop_as_a_whole():
    yous = [Segment(30.0 * i, 30.0 * i + 2, "you") for i in range(6)]
    assert guard.drop_loop(yous) == ()
    real = [Segment(0, 1, "No."), Segment(2, 3, "No.")]
    assert guard.drop_loop(real) == tuple(real)


# Through the real recognizer.

@pytest.mark.parametrize("seconds", [2, 30, 12 * 60])
def test_digital_silence_never_reaches_whisper(tiny_en, whisper_calls, seconds):
    started = time.perf_counter()
    transcript = tiny_en.transcribe(np.zeros(seconds * RATE, np.float32))
    print(f"{seconds} s of silence: {time.perf_counter() - started:.2f} s")
    _no_words(transcript)
    assert whisper_calls == [] and transcript.duration == seconds


@pytest.mark.parametrize("name", list(noise_clips()))
def test_noise_gives_no_words(tiny_en, name):
    _no_words(tiny_en.transcribe(noise_clips()[name]))


@pytest.mark.parametrize("name", list(tone_clips()))
def test_tones_give_no_words(tiny_en, name):
    _no_words(tiny_en.transcribe(tone_clips()[name]))


@needs_real_speech
def test_a_beep_is_cut_off_at_the_token_cap_and_real_speech_stays_far_below_it(
        tiny_en, monkeypatch):
    """A 2 s beep the VAD passes ran to 224 tokens of "Beep beep..." (1.2 s of decoding)."""
    seen: list[tuple[guard.TokenCap, int, bool]] = []
    reached = guard.TokenCap.reached

    def spy(cap: guard.TokenCap, listed: int) -> bool:
        seen.append((cap, listed, reached(cap, listed)))
        return seen[-1][2]

    monkeypatch.setattr(guard.TokenCap, "reached", spy)
    _no_words(tiny_en.transcribe(tone_clips()["440 Hz -20 dBFS, 2 s"]))
    cap, listed, dropped = seen[-1]
    assert dropped and cap.tokens < 100 and listed <= cap.tokens  # cut short of 224
    for _name, _reference, audio in real_clips():
        assert tiny_en.transcribe(audio).text
        cap, listed, dropped = seen[-1]
        assert not dropped and cap.reached_at is not None and listed < 0.6 * cap.reached_at


def test_the_token_cap_is_for_english_and_within_what_whisper_allows():
    assert guard.english("en", "small") and guard.english(None, "bundled-tiny.en")
    assert not guard.english(None, "small") and not guard.english("zh", "large-v3")
    assert guard.english(None, "distil-large-v3")  # English-only, though its name lacks .en

    def cap(seconds, **given):
        return guard.token_cap(seconds, **{"english": True, "ceiling": 400, "listed": 0.5,
                                           **given})

    assert cap(2) == guard.TokenCap(48, 24)  # 14 a second + 20; half listed when cut
    assert cap(2, ceiling=224, listed=1.0) == guard.TokenCap(48, 48)
    assert not cap(2).reached(23) and cap(2).reached(24)
    # Capped at the backend's ceiling: the decoder's 448 tokens with its prompt, or
    # openai-whisper's own 224. Such a cap is the backend's, so reaching it is not judged:
    # 25 s of ordinary speech can list 112 tokens or more.
    assert cap(12 * 60) == guard.TokenCap(400, None)
    assert cap(25, ceiling=224, listed=1.0) == guard.TokenCap(224, None)
    assert not cap(25, ceiling=224, listed=1.0).reached(10_000)
    assert cap(2, english=False) is None  # other scripts: uncapped, as before
    assert cap(2, options=guard.OFF) is None


def _wer_with_and_without(recognizer, clips, monkeypatch) -> list[tuple[float, float]]:
    figures = []
    for name, reference, audio in clips:
        guarded = recognizer.transcribe(audio).text
        with monkeypatch.context() as m:
            m.setattr(guard, "OPTIONS", guard.OFF)
            bare = recognizer.transcribe(audio).text
        figures.append((word_error_rate(reference, guarded), word_error_rate(reference, bare)))
        print(f"{name}: WER {figures[-1][0]:.2f} guarded {guarded!r}, "
              f"{figures[-1][1]:.2f} bare {bare!r}")
    return figures


@needs_real_speech
def test_real_people_keep_their_words(tiny_en, monkeypatch):
    figures = _wer_with_and_without(tiny_en, real_clips(), monkeypatch)
    assert len(figures) == 10
    assert all(guarded <= bare for guarded, bare in figures)
    assert np.mean([g for g, _ in figures]) <= 0.35


@needs_espeak
def test_espeak_sentences_keep_their_words(tiny_en, monkeypatch, tmp_path):
    clips = [(s, s, speech_array(s, tmp_path)) for s in SENTENCES]
    figures = _wer_with_and_without(tiny_en, clips, monkeypatch)
    assert all(guarded <= bare for guarded, bare in figures)


@needs_espeak
def test_speech_inside_long_silence_keeps_words_and_times(tiny_en, whisper_calls, tmp_path):
    first, second = (speech_array(s, tmp_path) for s in SENTENCES[3:5])
    audio = np.concatenate([np.zeros(40 * RATE, np.float32), first,
                            np.zeros(60 * RATE, np.float32), second,
                            np.zeros(20 * RATE, np.float32)])
    transcript = tiny_en.transcribe(audio)
    assert word_error_rate(" ".join(SENTENCES[3:5]), transcript.text) <= 0.2
    assert sum(whisper_calls) < 10  # seconds Whisper heard, of the 2 minutes
    # Whisper heard the two sentences back to back; its times map back to the recording.
    spoken_until = (40 + 60) + (len(first) + len(second)) / RATE
    assert 39.5 <= transcript.segments[0].start <= 40.5
    assert spoken_until - 1 <= transcript.segments[-1].end <= spoken_until + 0.5


@needs_espeak
def test_cli_transcribe_prints_only_words(data_dir, tmp_path, capsys):
    import soundfile as sf

    broken = (0.1 * np.sin(np.arange(2 * RATE) / 5)).astype(np.float32)
    broken[100:200], broken[5000] = np.nan, np.inf
    sf.write(tmp_path / "broken.wav", broken, RATE, subtype="FLOAT")
    sf.write(tmp_path / "silence.wav", np.zeros(60 * RATE, np.float32), RATE)
    sf.write(tmp_path / "speech.wav", speech_array(SENTENCES[1], tmp_path), RATE)
    names = [str(tmp_path / f) for f in ("broken.wav", "silence.wav", "speech.wav")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["transcribe", *names]) == 1  # a file failed
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{names[2]}: Please call me back tomorrow morning."]
    assert f"error: {names[0]}: The audio holds 101 samples that are not numbers" in err
    assert f"{names[1]}: no speech heard" in err and "!!" not in out + err

    assert main(["transcribe", names[1]]) == 1  # no file held speech
    out, err = capsys.readouterr()
    assert out == "" and f"{names[1]}: no speech heard" in err
    assert main(["transcribe", names[1], names[2]]) == 0  # one did
    assert capsys.readouterr().out.count("Please call me back") == 1


# The openai-whisper backend runs the same weights (converted); slow on CPU (2-4 s a clip).

@pytest.mark.slow
@needs_espeak
def test_openai_whisper_backend_is_guarded_too(tmp_path, monkeypatch):
    pytest.importorskip("whisper")
    recognizer = open_recognizer("whisper", device="cpu", language="en")
    calls = []
    decode = recognizer._model.transcribe
    monkeypatch.setattr(recognizer._model, "transcribe",
                        lambda audio, **kw: calls.append(len(audio)) or decode(audio, **kw))
    _no_words(recognizer.transcribe(np.zeros(30 * RATE, np.float32)))
    assert calls == []
    _no_words(recognizer.transcribe(tone_clips()["sweep -6 dBFS, 2 s"]))
    with pytest.raises(AudioFileError):
        recognizer.transcribe(np.array([0.0, np.nan] * RATE, np.float32))
    clips = [(s, s, speech_array(s, tmp_path)) for s in SENTENCES[1:3]]
    figures = _wer_with_and_without(recognizer, clips, monkeypatch)
    assert all(guarded <= bare for guarded, bare in figures)
    if real_speech.available():
        # Over ~15 s of speech its cap is its own 224 tokens: ordinary speech is kept whole.
        reading = real_speech.join(real_speech.speaker("librivox")[:5], gap_s=0.4)
        assert len(reading) / RATE > 20
        assert len(recognizer.transcribe(reading).text.split()) > 40
