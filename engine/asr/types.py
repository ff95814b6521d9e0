"""What a recognizer returns, and the protocol every backend offers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Segment:
    """A stretch of recognised speech."""

    start: float  # seconds from the start of the audio
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """The result of one ``transcribe`` call."""

    text: str
    language: str
    segments: tuple[Segment, ...] = ()
    duration: float = 0.0  # seconds of audio
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds (e.g. "decode")


class SpeechToText(Protocol):
    """A speech recognizer, loaded once and kept warm."""

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Recognise 16 kHz mono float32 ``audio``."""
        ...
