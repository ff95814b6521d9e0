"""The catalogue of what a user can get: personas, voice models and Whisper sizes."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from engine import paths

# Where the voice models' files come from (the catalogue's "tts" rows name configs whose files
# live in these Hub repos).
CLONING_REPO = "kyutai/pocket-tts"  # gated: accept the terms on the Hub, then use a token
PLAIN_REPO = "kyutai/pocket-tts-without-voice-cloning"  # open: built-in voices only


@dataclass(frozen=True)
class CatalogueEntry:
    """One persona the app knows how to obtain."""

    id: str
    name: str
    kind: str  # "bundled", "hub" (pulled) or "recipe" (trained locally)
    size_mb: int
    description: str = ""
    repo_id: str | None = None
    base_model: str | None = None
    subreddit: str | None = None
    config: str | None = None  # voice models: the pocket-tts config (e.g. english_7m_2026-10)
    default_on: tuple[str, ...] = ()  # voice models: devices ("cpu", "cuda") it is the default on
    int8_on_cpu: bool = False  # voice models: quantize on a CPU (pays off for the big one only)
    size: str | None = None  # speech models: the name settings and --model use ("small.en")


@functools.lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    return json.loads((paths.resources_dir() / "catalogue.json").read_text(encoding="utf-8"))


def catalogue() -> list[CatalogueEntry]:
    """All persona entries, in catalogue order."""
    return [CatalogueEntry(**entry) for entry in _load()["personas"]]


def tts_catalogue() -> list[CatalogueEntry]:
    """Voice models (the cloning TTS) that can be pulled."""
    return [CatalogueEntry(**{**entry, "default_on": tuple(entry.get("default_on", ()))})
            for entry in _load().get("tts", [])]


def asr_catalogue() -> list[CatalogueEntry]:
    """Whisper models for speech recognition: the bundled one, then the sizes that can be pulled.

    A pullable size (kind "asr") is a CTranslate2 repo that faster-whisper loads as it is and
    the openai-whisper backend converts once, so one download serves both backends.
    """
    return [CatalogueEntry(**{**entry, "default_on": tuple(entry.get("default_on", ()))})
            for entry in _load().get("asr", [])]


def asr_entry(ref: str) -> CatalogueEntry | None:
    """The Whisper model whose size, id, name or repo id is ``ref`` (case-insensitive), if any."""
    ref = ref.lower()
    for entry in asr_catalogue():
        if ref in {(entry.size or "").lower(), entry.id.lower(), entry.name.lower(),
                   (entry.repo_id or "").lower()}:
            return entry
    return None


def catalogue_entry(ref: str) -> CatalogueEntry | None:
    """The entry whose id, name or repo id is ``ref`` (case-insensitive), if any."""
    ref = ref.lower()
    for entry in catalogue() + tts_catalogue():
        if ref in {entry.id.lower(), entry.name.lower(), (entry.repo_id or "").lower()}:
            return entry
    return None


def default_decoding(prompt_format: str) -> dict[str, Any]:
    """Decoding settings a newly pulled or imported persona of this format starts with."""
    return dict(_load()["decoding"].get(prompt_format, {}))
