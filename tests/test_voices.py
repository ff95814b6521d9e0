"""Voices: GE2E speaker encoder (real weights), enrolment checks, storage, cloning TTS."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest

from engine.voices import store
from engine.voices.quality import assess
from tests.speech import SENTENCES, speech_array

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="needs espeak-ng and sox (installed by the set-up)")


@pytest.fixture(scope="module")
def encoder():
    from engine.voices.encoder import SpeakerEncoder

    return SpeakerEncoder()


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("voices-speech")


def voice_of(pitch: int, speech_dir, sentences=SENTENCES) -> np.ndarray:
    return np.concatenate([speech_array(s, speech_dir, pitch=pitch) for s in sentences])


def test_same_voice_scores_higher_than_different_voices(encoder, speech_dir):
    from engine.voices.encoder import similarity

    low_a = encoder.embed(voice_of(20, speech_dir, SENTENCES[:2]))
    low_b = encoder.embed(voice_of(20, speech_dir, SENTENCES[2:]))
    high_b = encoder.embed(voice_of(80, speech_dir, SENTENCES[2:]))
    same, different = similarity(low_a, low_b), similarity(low_a, high_b)
    print(f"same voice {same:.3f}, different voices {different:.3f}")
    assert same > different + 0.05
    assert np.linalg.norm(low_a) == pytest.approx(1.0, abs=1e-5)


def test_good_sample_passes_every_check(encoder, speech_dir):
    verdict = assess(voice_of(20, speech_dir), encoder)
    assert verdict.ok, verdict.summary()
    assert {c.name for c in verdict.checks} == {
        "duration", "clipping", "speech", "loudness", "noise", "bandwidth", "one_speaker"}
    assert verdict.notes == [] and verdict.summary() == "good sample"


def test_telephone_band_audio_passes_with_a_note(encoder, speech_dir, data_dir):
    from engine.audio.convert import resample
    from engine.voices.store import enroll

    phone = resample(resample(voice_of(20, speech_dir), 16000, 8000), 8000, 16000)
    verdict = assess(phone, encoder)
    assert verdict.ok  # a warning, not a refusal
    assert [c.name for c in verdict.checks if c.note] == ["bandwidth"]
    assert "telephone-band" in verdict.notes[0] and "phone call" in verdict.summary()
    # A file recorded below 16 kHz says so as well, and is kept.
    voice, kept = enroll("Phone", resample(phone, 16000, 8000), 8000, source="call.wav",
                         encoder=encoder)
    assert not voice.flagged
    assert {c.name for c in kept.checks if c.note} == {"bandwidth", "sample_rate"}
    assert any("8000 Hz" in n for n in kept.notes)


@pytest.mark.parametrize(("make", "says"), [
    (lambda s: np.zeros(16000 * 8, np.float32), "mostly silence"),
    (lambda s: np.clip(2 * np.sin(np.linspace(0, 4000 * np.pi, 16000 * 8)), -1, 1)
     .astype(np.float32), "clipping in"),
    (lambda s: speech_array(SENTENCES[0], s)[:16000], "too short: 1.0 s"),
    (lambda s: 0.003 * voice_of(20, s), "too quiet"),
])
def test_crafted_bad_samples_get_their_verdict(speech_dir, make, says):
    verdict = assess(make(speech_dir))
    assert not verdict.ok
    assert any(says in p for p in verdict.problems), verdict.problems


def test_noisy_sample_is_called_noisy(speech_dir):
    rng = np.random.default_rng(1)
    speech = voice_of(20, speech_dir)
    noisy = speech + 0.05 * rng.standard_normal(len(speech)).astype(np.float32)
    verdict = assess(noisy)
    assert any(p.startswith("noisy: speech is only") for p in verdict.problems), verdict.summary()
    assert assess(speech).ok


def test_enroll_store_and_manage(data_dir, encoder, speech_dir, tmp_path):
    voice, verdict = store.enroll("Grandpa Joe", voice_of(20, speech_dir), 16000,
                                  source="sample.wav", encoder=encoder)
    assert verdict.ok and not voice.flagged
    assert voice.id == "grandpa-joe" and voice.sample_path.is_file()
    import soundfile as sf

    info = sf.info(str(voice.sample_path))
    assert info.samplerate == 24000 and info.channels == 1
    assert voice.embedding().shape == (256,)
    with pytest.raises(store.VoiceError) as caught:
        store.enroll("grandpa joe", voice_of(20, speech_dir), 16000, source="x", encoder=encoder)
    assert caught.value.code == "voice_exists"
    renamed = store.rename("grandpa-joe", "Joe")
    assert renamed.name == "Joe" and store.find_voice("joe").id == "grandpa-joe"
    archive = store.export("Joe", tmp_path / "joe.zip")
    store.delete("Joe")
    assert store.list_voices()[0] == []
    restored = store.import_archive(archive)
    assert restored.name == "Joe" and restored.embedding().shape == (256,)


def test_bad_sample_is_refused_unless_kept_anyway(data_dir, encoder):
    silence = np.zeros(16000 * 6, np.float32)
    with pytest.raises(store.VoiceQualityError) as caught:
        store.enroll("Quiet", silence, 16000, source="x", encoder=encoder)
    assert "mostly silence" in caught.value.message
    assert store.list_voices()[0] == []  # nothing half-written
    voice, verdict = store.enroll("Quiet", silence, 16000, source="x", encoder=encoder,
                                  force=True)
    assert voice.flagged and not verdict.ok


def test_stereo_48k_file_import(data_dir, encoder, speech_dir):
    from engine.audio.files import load_audio
    from tests.speech import speak

    paths = [speak(s, speech_dir, rate=48000, channels=2, pitch=20) for s in SENTENCES]
    audio = np.concatenate([load_audio(p) for p in paths])
    voice, verdict = store.enroll("Stereo", audio, 16000, source="stereo.wav", encoder=encoder)
    assert verdict.ok, verdict.summary()


@pytest.mark.parametrize(("entries", "code"), [
    ({"../evil/voice.json": b"{}"}, "voice_archive_unsafe"),
    ({"/abs/voice.json": b"{}"}, "voice_archive_unsafe"),
    ({"a/voice.json": b"{}", "b/sample.wav": b""}, "voice_archive_unsafe"),
    ({"v/voice.json": b"not json", "v/sample.wav": b"x"}, "voice_damaged"),
])
def test_hostile_or_broken_archives_are_refused(data_dir, tmp_path, entries, code):
    archive = tmp_path / "v.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    with pytest.raises(store.VoiceError) as caught:
        store.import_archive(archive)
    assert caught.value.code == code
    assert not (tmp_path / "evil").exists()
    assert [p for p in store.voices_dir().iterdir()] == []


def test_damaged_voice_folder_is_reported_not_fatal(data_dir):
    broken = store.voices_dir() / "broken"
    broken.mkdir(parents=True)
    (broken / "voice.json").write_text("{}")
    voices, errors = store.list_voices()
    assert voices == [] and errors and "lacks 'name'" in errors[0].message
