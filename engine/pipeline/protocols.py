"""What the pipeline needs of its collaborators, as Protocols: any object with these methods works.

The real ones are engine.asr's recognizers, engine.tts.pocket.PocketTTS and
engine.audio.player.Player; tests pass fakes (tests/fakes.py) of the same shape.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Protocol

import numpy as np

from engine.audio.player import PieceListener
from engine.cancel import CancelToken


class Transcribed(Protocol):
    """A recognizer's result."""

    # Read-only, so a frozen dataclass (engine.asr.types.Transcript) qualifies.
    @property
    def text(self) -> str:
        """What was said."""
        ...


class Recognizer(Protocol):
    """Speech to text."""

    def transcribe(self, audio: np.ndarray) -> Transcribed:
        """Transcribe 16 kHz mono float32 ``audio``."""
        ...


class EarlyTranscript(Protocol):
    """A transcriber that listened while the talk key was held (engine.asr.incremental)."""

    def finish(self, audio: np.ndarray) -> Transcribed:
        """The transcript of ``audio`` (the trimmed recording), decoded early if it could be."""
        ...

    def close(self) -> None:
        """Drop the recording without a transcript."""
        ...


class SpokenChunk(Protocol):
    """A piece of synthesised audio."""

    samples: np.ndarray
    rate: int
    text: str


class Synthesizer(Protocol):
    """Text to speech, streamed."""

    def synthesize(self, text: str, voice: Any = None) -> Generator[SpokenChunk, None, None]:
        """Chunks of ``text`` spoken in ``voice`` as they are made; closing stops it."""
        ...


class AudioPlayer(Protocol):
    """Plays queued pieces in order and reports when each is heard."""

    def enqueue(self, samples: np.ndarray, rate: int, text: str = "", *, starts: bool = True,
                ends: bool = True, listener: PieceListener | None = None,
                cancel: CancelToken | None = None) -> None:
        """Queue a chunk (a whole piece, or a piece's first or later chunk).

        Dropped when ``cancel`` is cancelled, atomically with respect to :meth:`stop`.
        """
        ...

    def end_piece(self, text: str = "", cancel: CancelToken | None = None) -> None:
        """Close the piece being queued (nothing once ``cancel`` is cancelled)."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything queued has played; False on timeout."""
        ...

    def stop(self) -> None:
        """Stop at once."""
        ...
