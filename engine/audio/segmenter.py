"""When does an utterance start and end? A pure state machine fed with (seconds, is_speech).

It knows nothing of audio: the caller runs a VAD on each frame and passes the verdict, which
makes it testable with booleans. Speech starts after ``start_s`` of (nearly) continuous voiced
frames and ends after ``end_s`` of silence, or when the utterance reaches ``max_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class SegmenterOptions:
    """Timing of the hands-free segmenter, in seconds."""

    start_s: float = 0.15  # voiced time needed before speech counts as started
    # Silence that ends an utterance. Every hands-free turn waits this long after the last word;
    # 0.5 s cut none of 153 real read utterances and 0.4 s cut 2 % (benchmarks/vad_tail.py),
    # so 0.6 keeps a margin for the longer hesitations of unscripted speech.
    end_s: float = 0.6
    pre_roll_s: float = 0.3  # audio kept from before the start, so no syllable is clipped
    max_s: float = 30.0  # longest utterance; longer speech is cut here (Whisper's window)
    reset_s: float = 0.1  # silence that resets a not-yet-started speech run (a click, a cough)

    def __post_init__(self) -> None:
        for name in ("start_s", "end_s", "pre_roll_s", "max_s", "reset_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_s <= self.start_s:
            raise ValueError("max_s must be longer than start_s")


class Boundary(Enum):
    """What one chunk changed (the pipeline reports these as SPEECH_STARTED / SPEECH_ENDED)."""

    NONE = "none"
    STARTED = "started"
    ENDED = "ended"


class Segmenter:
    """Feed ``process(seconds, is_speech)`` per frame; it returns the event that frame caused."""

    def __init__(self, options: SegmenterOptions | None = None):
        self.options = options or SegmenterOptions()
        self.reset()

    def reset(self) -> None:
        """Back to waiting for speech."""
        self.in_speech = False
        self._voiced = 0.0  # voiced time in the current run, before start
        self._unvoiced = 0.0  # silence in the current run
        self._length = 0.0  # time since speech started
        self.timed_out = False  # the last utterance ended by max_s, not by silence

    def process(self, seconds: float, is_speech: bool) -> Boundary:
        """Advance by one chunk of ``seconds`` whose VAD verdict is ``is_speech``."""
        opts = self.options
        if not self.in_speech:
            if is_speech:
                self._voiced += seconds
                self._unvoiced = 0.0
                if self._voiced >= opts.start_s:
                    self.in_speech = True
                    self._length = self._voiced
                    self._unvoiced = 0.0
                    self.timed_out = False
                    return Boundary.STARTED
            else:
                self._unvoiced += seconds
                if self._unvoiced >= opts.reset_s:
                    self._voiced = 0.0
            return Boundary.NONE
        self._length += seconds
        self._unvoiced = 0.0 if is_speech else self._unvoiced + seconds
        if self._unvoiced >= opts.end_s or self._length >= opts.max_s:
            timed_out = self._length >= opts.max_s and self._unvoiced < opts.end_s
            self.reset()
            self.timed_out = timed_out
            return Boundary.ENDED
        return Boundary.NONE
