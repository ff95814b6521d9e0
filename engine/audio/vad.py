"""Voice activity detection with webrtcvad, on 10/20/30 ms frames of 16 kHz audio."""

from __future__ import annotations

import numpy as np

from engine.audio.frames import SAMPLE_RATE, to_pcm16
from engine.errors import ConfigError, MissingDependencyError


class VoiceActivity:
    """Is this frame speech? ``sensitivity`` 0 (lenient) to 3 (strict: only clear speech)."""

    def __init__(self, sensitivity: int = 2):
        if sensitivity not in (0, 1, 2, 3):
            raise ConfigError(f"VAD sensitivity must be 0, 1, 2 or 3, not {sensitivity!r}.",
                              code="vad_sensitivity_invalid")
        try:
            import webrtcvad
        except ImportError as err:
            raise MissingDependencyError("webrtcvad is not installed.",
                                         hint="pip install webrtcvad-wheels") from err
        self._vad = webrtcvad.Vad(sensitivity)

    def is_speech(self, frame: np.ndarray) -> bool:
        """Verdict for one frame of exactly 10, 20 or 30 ms."""
        return bool(self._vad.is_speech(to_pcm16(frame), SAMPLE_RATE))


def has_speech(audio: np.ndarray, seconds: float, sensitivity: int = 2) -> bool:
    """Whether ``audio`` (16 kHz) holds at least ``seconds`` of voiced 30 ms frames.

    Stops reading at the first ``seconds`` found, so a long recording costs little.
    """
    if seconds <= 0:
        return True
    vad = VoiceActivity(sensitivity)
    frame = SAMPLE_RATE * 30 // 1000
    needed, found = int(np.ceil(seconds * 1000 / 30)), 0
    for start in range(0, len(audio) - frame + 1, frame):
        found += vad.is_speech(audio[start:start + frame])
        if found >= needed:
            return True
    return False
