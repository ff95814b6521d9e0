"""Transcribe while the talk key is still held, so that letting go leaves (almost) nothing to do.

People stop speaking a few hundred milliseconds before they release the key. Whisper's cost is
mostly fixed per call (its encoder always sees a 30 s window), so decoding the growing recording
every second would not make the last call cheaper; the pause is what pays. When the voice
detector has heard ``pause_s`` of silence after speech, the speech so far is decoded in the
background, cut exactly as push-to-talk's trim will cut it (same verdicts, same margins). If
nothing is said after that, the transcript at release *is* the one-shot transcript, already done;
if the person goes on speaking, the early result is dropped and the release decodes as before.

So the words are never different from a one-shot transcription of the same recording; only the
time of the decode moves. ``benchmarks/turn_latency.py --ptt`` prints both side by side.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from engine.asr.types import Transcript
from engine.audio.frames import SAMPLE_RATE, FrameSlicer
from engine.audio.listener import FRAME_MS, ListenOptions, speech_bounds
from engine.audio.vad import VoiceActivity


class IncrementalTranscriber:
    """Fed the recording block by block (``push``); ``finish`` gives the transcript at release.

    Args:
        recognizer: anything with ``transcribe(audio) -> Transcript``.
        gate: the pipeline's device gate, so an early decode never runs beside another model
            call (None: call the recognizer directly).
        options: the listener's options (VAD sensitivity, trim margin, minimum speech).
        pause_s: silence after speech that starts an early decode. At least the trim margin,
            so the cut's end is already final when the decode starts.

    """

    def __init__(self, recognizer: Any, *, gate: Any = None,
                 options: ListenOptions | None = None, pause_s: float = 0.24):
        self.recognizer = recognizer
        self.gate = gate
        self.options = options or ListenOptions()
        self.pause_s = max(pause_s, self.options.margin_s)
        # A VAD of its own: webrtcvad adapts to what it has heard, so a detector shared with
        # other recordings would not give this recording's verdicts twice the same way.
        self._vad = VoiceActivity(self.options.sensitivity)
        self._slicer = FrameSlicer(FRAME_MS)
        self.verdicts: list[bool] = []  # one per 30 ms frame, from the recording's start
        # The recording in one array that doubles when full: a cut is then a view, not a
        # concatenation of every block so far at each decode.
        self._recording = np.zeros(SAMPLE_RATE * 4, np.float32)
        self._samples = 0
        self._last_voiced = -1  # index of the last voiced frame
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: tuple[int, int] | None = None  # bounds waiting to be decoded early
        self._done: dict[tuple[int, int], Transcript] = {}  # bounds -> transcript
        self._running: tuple[int, int] | None = None
        self._closed = False
        self.early_decodes = 0  # how many early decodes ran (the benchmark reports it)
        self.hit: bool | None = None  # after finish: was the early transcript used?
        self._worker = threading.Thread(target=self._work, name="asr-early", daemon=True)
        self._worker.start()

    def push(self, block: np.ndarray) -> None:
        """Add recorded audio (16 kHz mono float32), as it arrives."""
        block = np.asarray(block, dtype=np.float32).ravel()
        frames = self._slicer.push(block)
        verdicts = [self._vad.is_speech(frame) for frame in frames]
        with self._lock:
            end = self._samples + len(block)
            if end > len(self._recording):
                # A new array: views handed to a decode keep the old one, which is never
                # written to again.
                grown = np.zeros(max(end, 2 * len(self._recording)), np.float32)
                grown[:self._samples] = self._recording[:self._samples]
                self._recording = grown
            self._recording[self._samples:end] = block
            self._samples = end
            for verdict in verdicts:
                self.verdicts.append(verdict)
                if verdict:
                    self._last_voiced = len(self.verdicts) - 1
            silent_s = (len(self.verdicts) - 1 - self._last_voiced) * FRAME_MS / 1000
            if self._last_voiced >= 0 and silent_s >= self.pause_s:
                bounds = speech_bounds(self.verdicts, self._samples, self.options)
                if (bounds is not None and bounds not in self._done
                        and bounds != self._running):
                    self._pending = bounds
                    self._wake.notify()

    def finish(self, audio: np.ndarray) -> Transcript:
        """The transcript of ``audio``, the trimmed recording: early if it was decoded already.

        ``audio`` must be this recording cut with :attr:`verdicts` (``Listener.trim``); any
        other audio is simply decoded now.
        """
        with self._lock:
            self._closed = True
            self._pending = None
            self._wake.notify()
            match = self._match(audio)
            while match is not None and match not in self._done and self._running == match:
                self._wake.wait()  # the early decode of exactly this cut is under way
            early = self._done.get(match) if match is not None else None
        # The worker ends by itself; a stale early decode still running is not waited for
        # here (the gate, when there is one, orders it before the decode below).
        self.hit = early is not None
        if early is not None:
            return early
        return self._decode(audio)

    def close(self) -> None:
        """Stop the background worker (the recording was thrown away)."""
        with self._lock:
            self._closed = True
            self._pending = None
            self._wake.notify()
        self._worker.join()

    def _match(self, audio: np.ndarray) -> tuple[int, int] | None:
        """The bounds of ``audio`` within the recording, if it is one of the early cuts."""
        bounds = speech_bounds(self.verdicts, self._samples, self.options)
        if bounds is None or bounds[1] - bounds[0] != len(audio):
            return None
        if bounds in self._done or bounds == self._running:
            if np.array_equal(self._recording[bounds[0]:bounds[1]], audio):
                return bounds
        return None

    def _work(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._pending is None:
                    return
                bounds, self._pending = self._pending, None
                self._running = bounds
                audio = self._recording[bounds[0]:bounds[1]]
            try:
                transcript: Transcript | None = self._decode(audio)
            except Exception:  # the release decodes again and reports the error there
                transcript = None
            with self._lock:
                if transcript is not None:
                    self._done = {bounds: transcript}  # only the latest cut can still match
                    self.early_decodes += 1
                self._running = None
                self._wake.notify_all()

    def _decode(self, audio: np.ndarray) -> Transcript:
        started = time.perf_counter()
        if self.gate is not None:
            result = self.gate.run(self.recognizer.transcribe, audio)
        else:
            result = self.recognizer.transcribe(audio)
        if not isinstance(result, Transcript):  # a stand-in recognizer with only .text
            result = Transcript(text=result.text, language="",
                                duration=len(audio) / SAMPLE_RATE,
                                timings={"transcribe": time.perf_counter() - started})
        return result
