"""Speech to text: ``transcribe(audio) -> Transcript``, backends chosen by name."""

from __future__ import annotations

from typing import Any

from engine.asr.types import Segment, SpeechToText, Transcript
from engine.errors import ConfigError

__all__ = ["BACKENDS", "Segment", "SpeechToText", "Transcript", "open_recognizer"]

BACKENDS = ("whisper", "faster-whisper")


def open_recognizer(backend: str = "faster-whisper", **options: Any) -> SpeechToText:
    """The recognizer ``backend`` with its options (model, device, language)."""
    if backend == "whisper":
        from engine.asr.whisper_backend import WhisperRecognizer

        return WhisperRecognizer(**options)
    if backend == "faster-whisper":
        from engine.asr.faster_backend import FasterWhisperRecognizer

        return FasterWhisperRecognizer(**options)
    raise ConfigError(f"Unknown speech recognition backend {backend!r}.",
                      hint=f"Choose one of: {', '.join(BACKENDS)}.", code="asr_backend_unknown")
