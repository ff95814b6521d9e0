"""The cloning TTS with a tiny random Pocket TTS, and the player on the virtual speaker."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from engine.tts.pocket import LATENTS_FILE, PocketTTS
from tests.tiny_pocket_tts import build_tiny_pocket_tts

FRAME = 1920  # samples per 80 ms frame at 24 kHz


@pytest.fixture(scope="module")
def tts_dir(tmp_path_factory):
    return build_tiny_pocket_tts(tmp_path_factory.mktemp("tts") / "pocket")


@pytest.fixture(scope="module")
def tts(tts_dir):
    # Random weights never reach the end-of-speech threshold by design: exactly N frames.
    return PocketTTS(str(tts_dir), device="cpu", do_sample=False, max_frames=5,
                     eos_threshold=1e9)


@pytest.fixture
def voice(data_dir):
    """A voice folder with a 24 kHz sample (a tone: the tiny model does not care)."""
    import soundfile as sf

    from engine.voices.store import load_voice, voices_dir

    folder = voices_dir() / "tone"
    folder.mkdir()
    t = np.arange(24000 * 2) / 24000
    sf.write(folder / "sample.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 24000)
    (folder / "voice.json").write_text('{"name": "Tone", "created": 0, "source": "test"}')
    np.save(folder / "embedding.npy", np.ones(256, np.float32) / 16)
    return load_voice(folder)


def synth(tts, text, voice=None) -> np.ndarray:
    chunks = list(tts.synthesize(text, voice))
    assert len(chunks) == 1 and chunks[0].rate == 24000 and chunks[0].text == text
    return chunks[0].samples


def test_default_voice_output_shape_and_rate(tts):
    audio = synth(tts, "hello there")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 5 * FRAME


def test_cloned_voice_is_cached_and_deterministic(tts, voice):
    first = synth(tts, "hello there", voice)
    cache = voice.folder / LATENTS_FILE
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    second = synth(tts, "hello there", voice)  # from the cached latents
    assert cache.stat().st_mtime_ns == stamp  # not re-encoded
    assert np.array_equal(first, second)
    assert not np.array_equal(first, synth(tts, "hello there"))  # the voice changes the audio


def test_latents_from_cache_equal_fresh_encoding(tts, voice):
    from safetensors.torch import load_file

    fresh = tts.voice_latents(voice)
    cached = load_file(voice.folder / LATENTS_FILE)["audio_prompt_latents"]
    assert np.array_equal(fresh.numpy(), cached.numpy())
    (voice.folder / LATENTS_FILE).unlink()
    assert np.array_equal(tts.voice_latents(voice).numpy(), cached.numpy())


def test_moved_model_folder_still_loads(tts_dir, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(tts_dir, moved)
    assert len(synth(PocketTTS(str(moved), device="cpu", do_sample=False, max_frames=2,
                               eos_threshold=1e9), "hi")) == 2 * FRAME


def test_missing_model_says_how_to_get_it():
    from engine.errors import ModelNotAvailableError

    with pytest.raises(ModelNotAvailableError) as caught:
        PocketTTS("someone/not-downloaded", device="cpu")
    assert "text only" in caught.value.message and "models pull pocket-tts" in caught.value.hint


def test_text_is_normalised_and_empty_text_is_silent(tts):
    assert list(tts.synthesize("😀", None)) == []


@pytest.mark.audio
def test_player_plays_into_the_speaker_and_stops_at_once(pulse):
    from engine.audio.capture import Microphone
    from engine.audio.player import Player

    events = []
    player = Player(on_event=lambda kind, text: events.append((kind, text)))
    mic = Microphone()
    player.start()
    mic.start()
    try:
        next(mic.blocks())  # the microphone is live before anything plays
        t = np.arange(24000 * 4) / 24000
        tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        player.enqueue(tone, 24000, "a long tone")
        time.sleep(0.8)
        before = np.concatenate(mic.drain())
        stop_at = time.monotonic()
        player.stop()
        assert player.wait(0.1)
        stopped_in = time.monotonic() - stop_at
        time.sleep(0.5)
        after = np.concatenate(mic.drain())
    finally:
        mic.stop()
        player.close()
    from engine.audio.frames import dbfs

    assert dbfs(before[-8000:]) > -20  # the tone was playing
    # When did the microphone stop hearing it? (includes the capture path's own latency)
    loud = [i for i in range(0, len(after) - 160, 160) if dbfs(after[i:i + 160]) > -50]
    silent_after_ms = (loud[-1] + 160) / 16 if loud else 0.0
    print(f"stop() returned in {stopped_in * 1000:.1f} ms; sound gone {silent_after_ms:.0f} ms "
          "into the capture after it")
    assert silent_after_ms <= 150  # the 4 s tone was cut, not played out
    assert dbfs(after[int(0.15 * 16000):]) < -60
    assert ("speaking_started", "a long tone") in events
    assert ("speaking_ended", "a long tone") in events


@pytest.mark.audio
def test_player_plays_chunks_in_order_and_reports_each(pulse):
    from engine.audio.player import Player

    events = []
    player = Player(on_event=lambda kind, text: events.append((kind, text)))
    player.start()
    try:
        for name in ("one", "two", "three"):
            player.enqueue(np.full(4800, 0.1, np.float32), 48000, name)
        assert player.wait(5)
        time.sleep(player.latency + 0.1)
    finally:
        player.close()
    assert events == [(k, n) for n in ("one", "two", "three")
                      for k in ("speaking_started", "speaking_ended")]
