"""Which voice each persona speaks in: "talk to anyone" is a persona with its voice.

A pairing made here (``voices pair``, or choosing a voice in the window while the persona is
active) is kept in the data folder's ``persona_voices.json``, so it works for every persona,
the bundled starter too, whose folder is not the user's to write. Without one, the persona's
own ``default_voice`` (from training or a shared archive) speaks.
"""

from __future__ import annotations

import json
from typing import Any

from engine import paths
from engine.fsutil import atomic_write_text

PAIRS_FILE = "persona_voices.json"


def _pairs() -> dict[str, str]:
    path = paths.data_dir() / PAIRS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: no pairings (never fatal)
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def voice_for(persona: Any) -> str | None:
    """The voice ``persona`` speaks in: its pairing, else its own default (None: no voice)."""
    return _pairs().get(persona.id) or persona.default_voice


def pair(persona_id: str, voice: str | None) -> None:
    """Make ``persona_id`` speak in ``voice`` (a voice name or ``builtin:NAME``; None: unpair)."""
    pairs = _pairs()
    if voice:
        pairs[persona_id] = voice
    else:
        pairs.pop(persona_id, None)
    folder = paths.data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / PAIRS_FILE, json.dumps(pairs, indent=2, sort_keys=True) + "\n")
