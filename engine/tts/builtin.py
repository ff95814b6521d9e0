"""Built-in voices: the speakers Kyutai ships with Pocket TTS, usable without cloning.

Settings and the command line name them ``builtin:NAME`` (``builtin:alba``) so they never clash
with an enrolled voice called the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREFIX = "builtin:"


@dataclass(frozen=True)
class BuiltinVoice:
    """One of the voice model's own speakers."""

    name: str  # e.g. "alba"

    @property
    def ref(self) -> str:
        """How settings and the CLI name it."""
        return PREFIX + self.name

    @property
    def label(self) -> str:
        """How lists show it."""
        return f"{self.name.capitalize()} (built-in)"


def parse(ref: str | None) -> BuiltinVoice | None:
    """The built-in voice ``ref`` names (``builtin:alba``), or None for any other text."""
    if ref and ref.startswith(PREFIX) and ref[len(PREFIX):].strip():
        return BuiltinVoice(ref[len(PREFIX):].strip().lower())
    return None


def find_any_voice(ref: str | None) -> Any:
    """A built-in voice, an enrolled one, or None (the voice model's default speaker).

    Raises:
        VoiceError: an enrolled voice of that name does not exist.

    """
    if not ref:
        return None
    builtin = parse(ref)
    if builtin is not None:
        return builtin
    from engine.voices.store import find_voice

    return find_voice(ref)


def pulled_builtin_voices() -> list[BuiltinVoice]:
    """The built-in voices of every pulled catalogue voice model (cheap: no model is loaded)."""
    from engine.models.catalogue import tts_catalogue
    from engine.tts.runtime import pulled_builtin_voices as of_model

    names = {name for entry in tts_catalogue() for name in of_model(entry.config or "")}
    return [BuiltinVoice(name) for name in sorted(names)]


def describe_voice(voice: Any) -> str:
    """How status lines name the voice replies are spoken in (None: the default one)."""
    if voice is None:
        return "the default built-in voice (alba)"
    if isinstance(voice, BuiltinVoice):
        return f"the built-in voice {voice.name}"
    return f"the voice {voice.name}"
