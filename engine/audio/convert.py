"""Format conversion: any channel count and rate to 16 kHz mono float32."""

from __future__ import annotations

from math import gcd

import numpy as np

SAMPLE_RATE = 16000  # Hz


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array; 1-D input is returned as is."""
    audio = np.asarray(audio, dtype=np.float32)
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (anti-aliased) from ``rate`` to ``target``."""
    if rate == target:
        return np.asarray(audio, dtype=np.float32)
    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(audio, target // g, rate // g).astype(np.float32)


def to_mono_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """Whatever a device or file gives (48 kHz stereo is common) as 16 kHz mono float32."""
    return resample(to_mono(audio), rate, SAMPLE_RATE)
