"""Offline proof: typed and spoken turns run inside a network namespace with no interfaces.

``unshare -n`` puts the process in a fresh network namespace: no interface is up (not even
loopback), so any connection attempt fails at once. A command that succeeds there made no network
call it depended on; one run with ``HF_HUB_OFFLINE`` unset shows the app does not reach for the
Hub on its own either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.speech import speak

ROOT = Path(__file__).resolve().parent.parent


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(
    not _unshare_works(),
    reason="`unshare -n true` fails here (needs root or user namespaces): no network namespace")

# A spoken turn in one process, as `talk` runs it but without a sound card: the bundled Whisper
# tiny.en transcribes a WAV, the transcript goes through the voice pipeline to the persona.
SPOKEN_TURN = """
import sys
from engine.asr import open_recognizer
from engine.audio.files import load_audio
from engine.chat import open_backend
from engine.conversation import ChatSession
from engine.models.registry import find_persona
from engine.paths import conversations_db
from engine.pipeline.turns import VoicePipeline
from engine.store import ConversationStore

persona = find_persona(sys.argv[1])
store = ConversationStore(conversations_db())
session = ChatSession(store, open_backend(persona, device="cpu"), persona.id)
pipeline = VoicePipeline(session, recognizer=open_recognizer())
result = pipeline.run_audio_turn(load_audio(sys.argv[2]))
pipeline.close()
store.close()
print("heard:", result.user)
print("reply:", result.reply)
sys.exit(0 if result.failed_stage is None and result.reply else 1)
"""


def _in_namespace(args: list[str], data: Path, *, offline: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(TTT_DATA_DIR=str(data), PYTHONUNBUFFERED="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(["unshare", "-n", sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_namespace_really_has_no_network():
    """The premise: inside the namespace even a connection to loopback fails."""
    code = ("import socket\ntry:\n socket.create_connection(('127.0.0.1', 9), timeout=2)\n"
            "except OSError as e:\n print('refused', e.errno)\nelse:\n print('connected')")
    result = subprocess.run(["unshare", "-n", sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=30)
    assert "refused" in result.stdout, result


def test_typed_turn_runs_without_a_network(tmp_path, tiny_persona_dir):
    """A full typed turn (load, generate, store) with the Hub switched off, no network at all."""
    result = _in_namespace(["-m", "engine", "chat", "-p", str(tiny_persona_dir), "-m", "hello"],
                           tmp_path / "data", offline=True)
    assert result.returncode == 0, result.stderr
    assert "you> hello" in result.stdout and "bot> " in result.stdout
    assert len(result.stdout.split("bot> ", 1)[1].strip()) > 0


def test_no_network_call_unless_asked(tmp_path, tiny_persona_dir):
    """HF_HUB_OFFLINE unset and no network: chat still succeeds, quickly and quietly.

    With offline mode off, huggingface_hub and transformers would go online if the app asked them
    to (update checks, telemetry, resolving a model id). In this namespace any such attempt fails
    and the command would error or print a network warning; a clean success shows the local
    path of `chat` makes no network call. Only `models pull` and `--remote` go online.
    """
    result = _in_namespace(["-m", "engine", "chat", "-p", str(tiny_persona_dir), "-m", "hello"],
                           tmp_path / "data", offline=False)
    assert result.returncode == 0, result.stderr
    assert "bot> " in result.stdout
    for sign in ("Network is unreachable", "Connection", "offline mode", "Traceback"):
        assert sign not in result.stderr, result.stderr


def test_a_network_call_would_be_caught(tmp_path):
    """The check above can fail: asking for a pull in the namespace fails, clearly."""
    result = _in_namespace(["-m", "engine", "models", "pull", "dialogpt-small"],
                           tmp_path / "data", offline=False)
    assert result.returncode == 1
    assert "the Hugging Face Hub is not reachable" in result.stderr


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="needs espeak-ng and sox (installed by the set-up) for real speech")
def test_spoken_turn_runs_without_a_network(tmp_path, tiny_persona_dir):
    """Speech in (bundled Whisper tiny.en), a reply out, with no network and offline mode off."""
    wav = speak("Please call me back tomorrow morning.", tmp_path / "speech")
    result = _in_namespace(["-c", SPOKEN_TURN, str(tiny_persona_dir), str(wav)],
                           tmp_path / "data", offline=False)
    assert result.returncode == 0, result.stdout + result.stderr
    heard = result.stdout.split("heard:", 1)[1].split("\n", 1)[0].lower()
    assert "tomorrow" in heard and "morning" in heard, result.stdout
    transcribed = _in_namespace(["-m", "engine", "transcribe", str(wav)], tmp_path / "data",
                                offline=False)
    assert transcribed.returncode == 0, transcribed.stderr
    assert "tomorrow" in transcribed.stdout.lower()
