"""The GE2E speaker encoder (the SV2TTS "encoder"), with the weights ``resemblyzer`` ships.

Why our own module rather than ``import resemblyzer``: that import needs ``pkg_resources``
(setuptools < 81) through its webrtcvad dependency, plus librosa and its numba start-up; the
network is 3 LSTM layers and a linear layer, so we load its ``pretrained.pt`` with
``weights_only=True`` into the same architecture and compute the same mel features in numpy.

An utterance embedding is the L2-normalised mean of embeddings of 1.6 s windows (50% overlap
at the default rate); cosine similarity of two embeddings says how alike two voices sound.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from engine.audio.frames import SAMPLE_RATE, dbfs
from engine.errors import ModelNotAvailableError
from engine.voices.mel import melspectrogram

N_MELS = 40
WINDOW = 400  # samples: 25 ms at 16 kHz
HOP = 160  # samples: 10 ms
PARTIAL_FRAMES = 160  # mel frames in one window: 1.6 s
TARGET_DBFS = -30.0  # the encoder's training loudness


def pretrained_weights() -> Path:
    """``pretrained.pt`` inside the installed resemblyzer package (never imported)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            "The speaker encoder weights are not installed.",
            hint="pip install --no-deps resemblyzer")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise ModelNotAvailableError(f"The speaker encoder weights are missing ({path}).")
    return path


class SpeakerEncoder:
    """Embeds 16 kHz mono speech into 256-dimensional unit vectors."""

    def __init__(self, weights: Path | None = None, device: str = "cpu"):
        import torch
        from torch import nn

        class _GE2E(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
                self.linear = nn.Linear(256, 256)

            def forward(self, mels: Any) -> Any:
                _, (hidden, _) = self.lstm(mels)
                raw = torch.relu(self.linear(hidden[-1]))
                return raw / torch.norm(raw, dim=1, keepdim=True)

        checkpoint = torch.load(weights or pretrained_weights(), map_location="cpu",
                                weights_only=True)
        self._net = _GE2E()
        # The checkpoint also holds GE2E's training-only similarity scale and bias.
        self._net.load_state_dict(checkpoint["model_state"], strict=False)
        self._net.eval().to(device)
        self._torch = torch
        self.device = device

    def embed_partials(self, audio: np.ndarray, rate: float = 1.3) -> np.ndarray:
        """(n_windows, 256) embeddings of the 1.6 s windows of ``audio``."""
        audio = _normalise_volume(np.asarray(audio, dtype=np.float32))
        frame_step = max(1, int(round(SAMPLE_RATE / rate / HOP)))
        n_frames = int(np.ceil((len(audio) + 1) / HOP))
        starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + frame_step + 1), frame_step))
        last = starts[-1] * HOP
        # Drop a last window covering less than 75% real audio (unless it is the only one).
        if len(starts) > 1 and (len(audio) - last) / (PARTIAL_FRAMES * HOP) < 0.75:
            starts = starts[:-1]
        needed = (starts[-1] + PARTIAL_FRAMES) * HOP
        if needed > len(audio):
            audio = np.pad(audio, (0, needed - len(audio)))
        mel = melspectrogram(audio, SAMPLE_RATE, WINDOW, HOP, N_MELS)
        batch = np.stack([mel[s:s + PARTIAL_FRAMES] for s in starts])
        with self._torch.inference_mode():
            out = self._net(self._torch.from_numpy(batch).to(self.device))
        return out.cpu().numpy()

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The utterance embedding: mean of the window embeddings, L2-normalised."""
        partials = self.embed_partials(audio)
        mean = partials.mean(axis=0)
        return mean / np.linalg.norm(mean)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (1 = same direction)."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _normalise_volume(audio: np.ndarray) -> np.ndarray:
    level = dbfs(audio)
    if level <= -100:
        return audio
    return audio * (10 ** ((TARGET_DBFS - level) / 20))
