"""Recordings of real people from the Debian package ``pocketsphinx-testdata`` (BSD-2, CMU).

Three men reading at 16 kHz: a LibriVox reader (three sentences of *Sense and Sensibility*, 15 s),
the "goforward" speaker (commands and numbers, 10 s) and the "cards" speaker (five short phrases).
``installer/setup.sh --dev`` installs the package; tests that need it skip with that reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path("/usr/share/pocketsphinx/test/data")
SKIP_REASON = "needs the Debian package pocketsphinx-testdata (installer/setup.sh --dev)"
RATE = 16000


def available() -> bool:
    """Whether the recordings are installed."""
    return (DATA / "librivox").is_dir() and (DATA / "goforward.raw").is_file()


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".raw":  # headerless 16-bit little-endian mono at 16 kHz
        return np.fromfile(path, dtype="<i2").astype(np.float32) / 32768
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == RATE, path
    return audio


def speaker(name: str) -> list[np.ndarray]:
    """The utterances of one man: ``librivox``, ``goforward`` or ``cards``."""
    if name == "goforward":
        files = [DATA / f"{n}.raw" for n in ("goforward", "numbers", "something")]
    else:
        files = sorted((DATA / name).glob("*.wav"))
    return [_read(f) for f in files]


def join(utterances: list[np.ndarray], gap_s: float = 0.3) -> np.ndarray:
    """Utterances one after another, ``gap_s`` of silence between them."""
    gap = np.zeros(int(gap_s * RATE), np.float32)
    parts = []
    for u in utterances:
        parts += [u, gap]
    return np.concatenate(parts[:-1])


def turns(a: np.ndarray, b: np.ndarray, seconds: float) -> np.ndarray:
    """Two people taking turns of ``seconds`` each (a conversation), until either runs out."""
    size = int(seconds * RATE)
    gap = np.zeros(int(0.3 * RATE), np.float32)
    parts = []
    for start in range(0, min(len(a), len(b)), size):
        parts += [a[start:start + size], gap, b[start:start + size], gap]
    return np.concatenate(parts)
