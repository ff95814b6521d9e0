"""Real speech for tests: espeak-ng sentences, resampled with sox."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

SENTENCES = [
    "The weather is nice today.",
    "Please call me back tomorrow morning.",
    "I would like a cup of coffee.",
    "My favorite color is green.",
    "We are going to the park this afternoon.",
]


def speak(text: str, folder: Path, *, voice: str = "en-us", rate: int = 16000,
          channels: int = 1, pitch: int = 50) -> Path:
    """WAV of ``text`` spoken by espeak-ng at ``rate`` Hz with ``channels`` channels."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{abs(hash((text, voice, rate, channels, pitch)))}"
    raw, out = folder / f"{name}-raw.wav", folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-p", str(pitch), "-w", str(raw),
                    text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(rate), "-c", str(channels), "-b", "16", str(out)],
                   check=True)
    return out


def speech_array(text: str, folder: Path, **kwargs) -> np.ndarray:
    """16 kHz mono float32 of ``text``."""
    import soundfile as sf

    audio, rate = sf.read(str(speak(text, folder, **kwargs)), dtype="float32")
    assert rate == 16000
    return audio


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length (case, punctuation ignored)."""
    from engine.chat.echo import normalise

    ref, hyp = normalise(reference).split(), normalise(hypothesis).split()
    dist = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, dist[0] = dist[0], i
        for j, h in enumerate(hyp, 1):
            prev, dist[j] = dist[j], min(dist[j] + 1, dist[j - 1] + 1, prev + (r != h))
    return dist[len(hyp)] / max(1, len(ref))
