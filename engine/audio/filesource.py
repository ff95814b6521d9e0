"""A recording played back as if it were a microphone.

Same interface as :class:`engine.audio.capture.Microphone` (start / blocks / drain / stop), so a
WAV file can stand in for the microphone in the app's push-to-talk and hands-free paths: used by
tests, the latency benchmark, and ``--input-file`` style demos. Blocks are paced in real time (or
faster, ``speed``), and after the file ends silence follows until :meth:`stop`, as a live
microphone would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.audio.capture import BLOCK_S
from engine.audio.convert import SAMPLE_RATE


class FileMicrophone:
    """Plays ``audio`` (16 kHz mono float32, or a file path) as 30 ms blocks."""

    def __init__(self, audio: np.ndarray | str | Path, *, speed: float = 1.0,
                 loop_silence: bool = True):
        if not isinstance(audio, np.ndarray):
            from engine.audio.files import load_audio

            audio = load_audio(audio)
        self.audio = np.asarray(audio, dtype=np.float32)
        self.speed = speed
        self.loop_silence = loop_silence
        self._running = threading.Event()
        self.started = 0  # how many times start() was called (tests read it)

    def start(self) -> None:
        """Begin 'recording' from the start of the file."""
        self.started += 1
        self._running.set()

    def blocks(self) -> Iterator[np.ndarray]:
        """Blocks in real time until :meth:`stop`; silence after the file's end."""
        n = int(SAMPLE_RATE * BLOCK_S)
        position = 0
        next_at = time.perf_counter()
        while self._running.is_set():
            block = self.audio[position:position + n]
            position += n
            if len(block) < n:
                if not self.loop_silence and position - n >= len(self.audio):
                    return
                block = np.concatenate([block, np.zeros(n - len(block), np.float32)])
            next_at += BLOCK_S / self.speed
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if not self._running.is_set():
                return
            yield block

    def drain(self) -> list[np.ndarray]:
        """Nothing is buffered: blocks are made on demand."""
        return []

    def stop(self) -> None:
        """End :meth:`blocks` (safe to call twice)."""
        self._running.clear()
