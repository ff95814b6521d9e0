"""What a TTS backend produces, and the protocol every backend offers."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class AudioChunk:
    """Synthesised audio for (part of) a piece of text."""

    samples: np.ndarray  # mono float32
    rate: int  # Hz
    text: str  # what it says


class TextToSpeech(Protocol):
    """A voice-cloning synthesizer."""

    rate: int  # Hz of the audio it produces
    model_id: str  # which model speaks (for status lines)

    def synthesize(self, text: str, voice: Any | None) -> Generator[AudioChunk, None, None]:
        """Speak ``text`` in ``voice`` (an enrolled Voice, or None for the model's own)."""
        ...
