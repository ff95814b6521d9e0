"""Shared fixtures: an isolated data folder per test, tiny and real personas, thread hygiene."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import pytest

from tests.tiny_models import build_tiny_dialogpt

# Nothing in the tests may reach the Hub: fail fast instead of waiting on the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Qt renders real widgets without a display; with no display and no platform set it would
# abort the whole process (exit 134) instead of raising.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def collect_garbage_on_the_main_thread():
    """Cyclic GC only here, between tests, on the main thread (as the app does: app/gc_guard).

    Left automatic, a collection can start in a worker thread and free a cycle holding a Qt
    widget there, which segfaults the whole run.
    """
    gc.disable()
    yield
    gc.collect()


@pytest.fixture(scope="session", autouse=True)
def session_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder for the whole run (the converted starter model is cached here)."""
    path = tmp_path_factory.mktemp("data")
    os.environ["TTT_DATA_DIR"] = str(path)
    return path


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty data folder for one test."""
    path = tmp_path / "data"
    monkeypatch.setenv("TTT_DATA_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_persona_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random DialoGPT-shaped persona (greedy, 12 new tokens)."""
    return build_tiny_dialogpt(tmp_path_factory.mktemp("personas") / "tiny")


@pytest.fixture(scope="session")
def tiny_chat(tiny_persona_dir: Path):
    """The tiny persona loaded through the normal loader, on CPU."""
    from engine.chat.local import LocalChat
    from engine.models.persona import load_persona

    return LocalChat.load(load_persona(tiny_persona_dir), device="cpu")


@pytest.fixture(scope="session")
def starter_chat():
    """The real SmolLM2-135M-Instruct starter persona, as a user gets it (slow: ~20-40 s)."""
    from engine.chat.local import LocalChat
    from engine.models.registry import find_persona

    return LocalChat.load(find_persona("starter"), device="cpu")


@pytest.fixture(scope="session")
def pocket_repos(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random pocket-tts model's Hub files (both repos) and its config YAML."""
    from tests.tiny_pocket_tts import build_pocket_repos

    return build_pocket_repos(tmp_path_factory.mktemp("pocket") / "repos")


@pytest.fixture(scope="session")
def pocket_cache_dir(pocket_repos, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hub cache holding the tiny pocket-tts model, as a pull leaves it (cloning weights)."""
    from tests.tiny_pocket_tts import install_into_cache

    cache = tmp_path_factory.mktemp("pocket-cache")
    install_into_cache(pocket_repos, cache)
    return cache


@pytest.fixture
def pocket_cache(pocket_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point huggingface_hub (and child processes) at ``pocket_cache_dir``."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(pocket_cache_dir))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(pocket_cache_dir))
    return pocket_cache_dir


@pytest.fixture
def quick_pocket_config(pocket_repos, pocket_cache: Path, tmp_path: Path) -> Path:
    """The tiny model's config, ending each piece as early as allowed (about 9 frames)."""
    import yaml

    data = yaml.safe_load(pocket_repos.config.read_text(encoding="utf-8"))
    data["default_eos_threshold"] = -1e9  # any end-of-speech score ends it
    path = tmp_path / f"{pocket_repos.name}.yaml"  # same name: same cached files
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# Name prefixes of the threads the app starts (daemon threads too: they must still end).
OUR_THREADS = ("chat-", "serve-", "pipeline-", "player-", "tts-", "capture-", "fake-player")


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Fail a test that leaves a thread of ours running (generation, servers)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        extra = [t for t in threading.enumerate()
                 if t not in before and t.is_alive()
                 and (not t.daemon or t.name.startswith(OUR_THREADS))]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"threads left running: {[t.name for t in extra]}"


@pytest.fixture(scope="session")
def pulse(tmp_path_factory):
    """A private PulseAudio server: default sink ``vsink``, default source ``vmic``."""
    from tests.pulse import PulseServer

    if not PulseServer.available():
        pytest.skip("needs PulseAudio (installed by `bash installer/setup.sh --dev`)")
    server = PulseServer(tmp_path_factory.mktemp("pulse"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_hf_cache(tmp_path, monkeypatch) -> Path:
    """A private, empty Hugging Face cache for one test (what a pull writes, and nothing else)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def online(monkeypatch):
    """Call with a running fake Hub (tests/fake_hub.py): huggingface_hub then talks to it."""
    from huggingface_hub import constants

    def use(hub) -> None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}")

    return use


@pytest.fixture
def offline(monkeypatch):
    """Offline mode on, as this suite sets it (and as a user on a train might)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
