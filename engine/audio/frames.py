"""Re-slicing device blocks into the fixed frames webrtcvad needs, and level metering.

webrtcvad takes exactly 10, 20 or 30 ms of 16-bit mono PCM at 8/16/32/48 kHz. Devices deliver
blocks of any length, so :class:`FrameSlicer` buffers and cuts.
"""

from __future__ import annotations

import numpy as np

from engine.audio.convert import SAMPLE_RATE  # 16 kHz: what Whisper and the VAD get

VAD_FRAME_MS = (10, 20, 30)


def to_pcm16(audio: np.ndarray) -> bytes:
    """Float32 in [-1, 1] to little-endian 16-bit PCM bytes (clipped)."""
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def dbfs(audio: np.ndarray) -> float:
    """RMS level in dB relative to full scale; -100 for silence."""
    if audio.size == 0:
        return -100.0
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return max(-100.0, 20 * np.log10(rms)) if rms > 0 else -100.0


class FrameSlicer:
    """Collects float32 blocks and hands out frames of exactly ``frame_ms``."""

    def __init__(self, frame_ms: int = 30, sample_rate: int = SAMPLE_RATE):
        if frame_ms not in VAD_FRAME_MS:
            raise ValueError(f"frame_ms must be one of {VAD_FRAME_MS}, not {frame_ms}")
        self.frame_samples = sample_rate * frame_ms // 1000
        self.frame_seconds = frame_ms / 1000
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        """Add a block; return every whole frame now available, in order."""
        data = np.concatenate([self._pending, np.asarray(block, dtype=np.float32).ravel()])
        n = len(data) // self.frame_samples
        frames = [data[i * self.frame_samples:(i + 1) * self.frame_samples] for i in range(n)]
        self._pending = data[n * self.frame_samples:]
        return frames

    @property
    def pending_samples(self) -> int:
        """Samples waiting for the next whole frame."""
        return len(self._pending)
