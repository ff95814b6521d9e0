"""The voice: pocket-tts through the app's loader, pull and cache, with a tiny random model.

Random weights speak noise, so these tests check chunk order, lengths, rates, cancelling,
the voice-state cache and the messages, not sound. The model is loaded through the same code as
a real one: its files sit in a Hub cache where a pull puts them (or are pulled from a local fake
Hub), and nothing is downloaded by the runtime.
"""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from engine.errors import ModelNotAvailableError
from engine.tts.builtin import BuiltinVoice, find_any_voice
from engine.tts.pocket import FRAME_SAMPLES, CloningUnavailableError, PocketTTS
from tests.tiny_pocket_tts import CLONING_REPO, PLAIN_REPO, install_into_cache

LONG = "This sentence is long enough to take a good many frames to say out loud. " * 3


@pytest.fixture
def tts(pocket_repos, pocket_cache):
    # An end-of-speech threshold never reached: every sentence runs its full frame budget.
    return PocketTTS(str(pocket_repos.config), device="cpu", eos_threshold=1e9)


@pytest.fixture
def voice(data_dir):
    """An enrolled voice whose 24 kHz sample is a tone (the tiny model does not care)."""
    import soundfile as sf

    from engine.voices.store import load_voice, voices_dir

    folder = voices_dir() / "tone"
    folder.mkdir(parents=True)
    t = np.arange(24000 * 2) / 24000
    sf.write(folder / "sample.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 24000)
    (folder / "voice.json").write_text('{"name": "Tone", "created": 0, "source": "test"}')
    np.save(folder / "embedding.npy", np.ones(256, np.float32) / 16)
    return load_voice(folder)


def _pocket_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if "run_generation" in t.name or "_decode_audio_worker" in t.name]


def _states_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(
        a[m].keys() == b[m].keys() and all(np.array_equal(a[m][k].numpy(), b[m][k].numpy())
                                           for k in a[m]) for m in a)


def test_chunks_stream_in_frames_at_24khz(tts):
    chunks = list(tts.synthesize("Hello there, how are you today?"))
    assert len(chunks) >= 2  # streamed, not one block at the end
    assert all(c.rate == 24000 and c.samples.dtype == np.float32 and c.samples.ndim == 1
               for c in chunks)
    assert all(len(c.samples) % FRAME_SAMPLES == 0 and len(c.samples) for c in chunks)
    assert {c.text for c in chunks} == {"Hello there, how are you today?"}
    total = sum(len(c.samples) for c in chunks)
    # The first chunk is a small part of the sentence: speech can start before the rest exists.
    assert len(chunks[0].samples) <= total // 4


def test_first_chunk_arrives_before_the_sentence_is_done(tts):
    started = time.perf_counter()
    stream = tts.synthesize(LONG)
    next(stream)
    first = time.perf_counter() - started
    for _ in stream:
        pass
    whole = time.perf_counter() - started
    print(f"first chunk {first * 1000:.0f} ms, whole sentence {whole * 1000:.0f} ms")
    assert first < whole / 2


def test_closing_the_stream_stops_generation_at_once(tts):
    stream = tts.synthesize(LONG)
    next(stream)
    stream.close()
    deadline = time.monotonic() + 2.0
    while _pocket_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _pocket_threads() == []


def test_text_is_normalised_and_empty_text_is_silent(tts):
    assert list(tts.synthesize("😀")) == []


def test_builtin_voices_load_from_their_pulled_states(tts):
    assert sorted(tts.builtin_voices) == ["alba", "marius"]
    alba, marius = tts.voice_state(None), tts.voice_state(BuiltinVoice("marius"))
    assert not _states_equal(alba, marius)
    assert list(tts.synthesize("Hi.", BuiltinVoice("marius")))
    with pytest.raises(ModelNotAvailableError) as caught:
        tts.voice_state(BuiltinVoice("javert"))
    assert "not downloaded" in caught.value.message and "models pull" in caught.value.hint


def test_enrolled_voice_state_is_cached_per_model_and_reused(tts, voice, pocket_repos,
                                                             monkeypatch):
    stale = voice.folder / "pocket_state.tiny.0000000000.safetensors"  # an older release's
    stale.write_bytes(b"old")
    state = tts.voice_state(voice)
    cache = tts.state_file(voice)
    assert cache.is_file() and cache.name.startswith("pocket_state.tiny.")
    assert not stale.exists()
    stamp = cache.stat().st_mtime_ns
    assert list(tts.synthesize("Hello.", voice))
    # A new process (a fresh model object) reads the cache instead of encoding the sample.
    fresh = PocketTTS(str(pocket_repos.config), device="cpu", eos_threshold=1e9)
    monkeypatch.setattr(fresh, "_encode", lambda v: pytest.fail("re-encoded the sample"))
    assert _states_equal(fresh.voice_state(voice), state)
    assert cache.stat().st_mtime_ns == stamp
    # The cache equals a fresh encoding of the sample.
    cache.unlink()
    assert _states_equal(PocketTTS(str(pocket_repos.config), device="cpu").voice_state(voice),
                         state)


def test_another_model_gets_its_own_state(tts, voice, pocket_repos, tmp_path):
    other_config = tmp_path / "tiny_other.yaml"
    shutil.copyfile(pocket_repos.config, other_config)
    other = PocketTTS(str(other_config), device="cpu")
    tts.voice_state(voice)
    other.voice_state(voice)
    names = sorted(p.name.split(".")[1] for p in voice.folder.glob("pocket_state.*"))
    assert names == ["tiny", "tiny_other"]


def test_a_damaged_state_cache_is_rebuilt(tts, voice):
    cache = tts.state_file(voice)
    cache.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\"")
    assert list(tts.synthesize("Hello.", voice))
    assert cache.stat().st_size > 100


def test_a_damaged_sample_says_so(tts, voice):
    from engine.voices.store import VoiceError

    voice.sample_path.write_bytes(b"RIFF garbage, not a wave" * 10)
    with pytest.raises(VoiceError) as caught:
        list(tts.synthesize("Hello.", voice))
    assert caught.value.code == "voice_damaged" and "enroll it again" in caught.value.hint


def test_missing_model_says_how_to_get_it(pocket_repos, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotAvailableError) as caught:
        PocketTTS(str(pocket_repos.config), device="cpu")
    assert caught.value.message == "The voice model tiny is not downloaded."  # the caller
    assert "talk-to-transformers models pull" in caught.value.hint  # says what follows
    with pytest.raises(ModelNotAvailableError) as caught:
        PocketTTS("no-such-voice-model", device="cpu")
    assert "pocket-tts-7m" in caught.value.hint  # the catalogue's choices are named


def test_without_the_cloning_weights_builtin_voices_still_speak(pocket_repos, voice, tmp_path,
                                                                 monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "open-only"
    install_into_cache(pocket_repos, cache, cloning=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    tts = PocketTTS(str(pocket_repos.config), device="cpu", eos_threshold=1e9)
    assert not tts.cloning
    assert list(tts.synthesize("Hello.", BuiltinVoice("alba")))
    with pytest.raises(CloningUnavailableError) as caught:
        tts.voice_state(voice)
    hint = caught.value.hint
    assert f"https://huggingface.co/{CLONING_REPO}" in hint and "token" in hint
    assert "Built-in voices work meanwhile" in hint


def test_voice_refs_name_builtin_and_enrolled_voices(voice):
    assert find_any_voice("builtin:Marius") == BuiltinVoice("marius")
    assert find_any_voice("Tone").folder == voice.folder
    assert find_any_voice(None) is None
    assert BuiltinVoice("alba").label == "Alba (built-in)"


def test_importing_the_runtime_keeps_the_process_threads():
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(2); from engine.tts.runtime import runtime; "
            "runtime(); print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "2", out.stderr


# -- pulling through the app's model manager, from a local fake Hub -----------------------------


@pytest.fixture
def tiny_catalogue(pocket_repos, monkeypatch):
    """The catalogue with one voice model: the tiny one."""
    from engine.models import catalogue

    data = dict(catalogue._load())
    data["tts"] = [{"id": "tiny-tts", "name": "Tiny TTS", "kind": "tts",
                    "config": str(pocket_repos.config), "default_on": ["cpu"], "size_mb": 1}]
    monkeypatch.setattr(catalogue, "_load", lambda: data)


@pytest.fixture
def hub(pocket_repos, tmp_path, monkeypatch):
    """Starts a fake Hub serving both repos (gated ones given) and points the app at it."""
    from huggingface_hub import constants

    from tests.fake_hub import FakeHub

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    servers = []

    def start(gated: tuple[str, ...] = (), invalid_token: str | None = None) -> FakeHub:
        server = FakeHub({r: pocket_repos.repo(r) for r in (CLONING_REPO, PLAIN_REPO)},
                         gated=gated, invalid_token=invalid_token)
        server.__enter__()
        servers.append(server)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        return server

    yield start
    for server in servers:
        server.__exit__()


def test_pull_gets_cloning_weights_tokenizer_and_voices(tiny_catalogue, hub, data_dir):
    from engine.install import manager
    from engine.models.catalogue import catalogue_entry
    from engine.tts.runtime import voice_model_ready

    server = hub()
    lines: list[str] = []
    bytes_seen: list[tuple[int, int | None]] = []
    result = manager.pull("tiny-tts", progress=lines.append,
                          on_bytes=lambda done, total: bytes_seen.append((done, total)))
    assert result.cloning and result.voices == ["alba", "marius"] and result.note is None
    fetched = [r for r in server.requests if r.startswith("GET") and "/resolve/" in r]
    assert any(CLONING_REPO + "/resolve/" in r for r in fetched)
    assert not any(f"{PLAIN_REPO}/resolve/" in r and r.endswith("model.safetensors")
                   for r in fetched)  # the open weights are not needed as well
    assert bytes_seen and bytes_seen[-1][0] > 0
    assert voice_model_ready(catalogue_entry("tiny-tts"))
    tts = PocketTTS("tiny-tts", device="cpu")
    assert tts.cloning and sorted(tts.builtin_voices) == ["alba", "marius"]
    assert PocketTTS("auto", device="cpu").model_id == "tiny-tts"  # the CPU default


def test_gated_cloning_weights_fall_back_to_builtin_voices_and_say_why(tiny_catalogue, hub,
                                                                      data_dir):
    from engine.install import manager
    from engine.install.voice_pull import describe

    hub(gated=(CLONING_REPO,))
    lines: list[str] = []
    result = manager.pull("tiny-tts", progress=lines.append)
    assert not result.cloning and result.voices == ["alba", "marius"]
    assert "gated" in result.note and "no Hugging Face token is saved" in result.note
    assert f"https://huggingface.co/{CLONING_REPO}" in result.note
    assert "talk-to-transformers token set" in result.note
    assert any("gated" in line for line in lines)
    assert "built-in voices only (alba, marius)" in describe(result)
    tts = PocketTTS("tiny-tts", device="cpu")
    assert not tts.cloning and list(tts.synthesize("Hi.", BuiltinVoice("marius")))


def test_a_token_without_access_is_told_apart(tiny_catalogue, hub, data_dir, monkeypatch):
    from engine.install import manager

    monkeypatch.setenv("HF_TOKEN", "hf_not_granted")
    hub(gated=(CLONING_REPO,))
    result = manager.pull("tiny-tts", progress=lambda line: None)
    assert "has not been granted access" in result.note


def test_a_token_the_hub_refuses_is_named_as_such(tiny_catalogue, hub, data_dir, monkeypatch):
    from engine.install import manager

    monkeypatch.setenv("HF_TOKEN", "hf_expired")
    hub(invalid_token="hf_expired")
    with pytest.raises(ModelNotAvailableError) as caught:
        manager.pull("tiny-tts", progress=lambda line: None)
    assert caught.value.code == "token_invalid"
    assert "refused the saved token" in caught.value.message
    assert "token set" in caught.value.hint and "token clear" in caught.value.hint


def test_a_re_enrolled_voice_is_encoded_anew(tts, voice):
    import soundfile as sf

    first = tts.voice_state(voice)
    t = np.arange(24000 * 3) / 24000  # the same name, another sample
    sf.write(voice.sample_path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 24000)
    tts.state_file(voice).unlink()
    assert not _states_equal(tts.voice_state(voice), first)


def test_damaged_model_files_are_messages(pocket_repos, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from engine.errors import ModelLoadError

    cache = tmp_path / "damaged"
    install_into_cache(pocket_repos, cache)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    alba = next(cache.rglob("embeddings/alba.safetensors"))
    alba.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\"")
    tts = PocketTTS(str(pocket_repos.config), device="cpu")
    with pytest.raises(ModelLoadError) as caught:
        tts.voice_state(None)
    assert "damaged" in caught.value.message and "pull" in caught.value.hint
    weights = next(p for p in cache.rglob("model.safetensors")
                   if "models--kyutai--pocket-tts" in p.parts)  # the cloning weights
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"x\": 1}")
    with pytest.raises(ModelLoadError) as caught:
        PocketTTS(str(pocket_repos.config), device="cpu")
    assert "Pull it again" in caught.value.hint


def test_pull_offline_and_cancelled(tiny_catalogue, hub, data_dir, monkeypatch):
    from huggingface_hub import constants

    from engine.cancel import CancelToken
    from engine.install import manager

    hub()
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(manager.PullCancelled):
        manager.pull("tiny-tts", progress=lambda line: None, cancel=cancel)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotAvailableError) as caught:
        manager.pull("tiny-tts", progress=lambda line: None)
    assert caught.value.code == "hub_unreachable"


def test_models_list_and_say_through_the_cli(pocket_repos, pocket_cache, data_dir, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import soundfile as sf

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TTT_DATA_DIR": str(data_dir)}
    out = tmp_path / "said.wav"
    said = subprocess.run(
        [sys.executable, "-m", "engine", "say", "Hello there, 3 cats!", "--voice",
         "builtin:marius", "--tts-model", str(pocket_repos.config), "-o", str(out)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert said.returncode == 0, said.stderr
    info = sf.info(str(out))
    assert info.samplerate == 24000 and info.frames % FRAME_SAMPLES == 0 and info.frames
    listed = subprocess.run([sys.executable, "-m", "engine", "models", "list"], cwd=root,
                            env=env, capture_output=True, text=True, timeout=300)
    assert "pocket-tts-7m" in listed.stdout and "Voice models:" in listed.stdout
    assert "This transformers version has no Pocket TTS" not in listed.stdout + listed.stderr
