"""From a stream of 16 kHz blocks to utterances: hands-free (VAD decides) or push-to-talk.

Push-to-talk trims silence at both ends and refuses a press with no speech in it ("no speech
heard") rather than sending an empty transcript on to the chat. A level (dBFS) is reported for
every block so a UI can draw a meter.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.audio.frames import SAMPLE_RATE, FrameSlicer, dbfs
from engine.audio.segmenter import Boundary, Segmenter, SegmenterOptions
from engine.audio.vad import VoiceActivity
from engine.errors import TalkError

FRAME_MS = 30


class NoSpeechError(TalkError):
    """The recording holds no speech."""

    code = "no_speech"


@dataclass(frozen=True)
class ListenOptions:
    """How speech is found in the audio."""

    sensitivity: int = 2  # webrtcvad mode, 0 (lenient) to 3 (strict)
    segmenter: SegmenterOptions = field(default_factory=SegmenterOptions)
    margin_s: float = 0.2  # audio kept around the speech when push-to-talk trims
    min_speech_s: float = 0.1  # less voiced audio than this is "no speech heard"


@dataclass(frozen=True)
class Heard:
    """One hands-free utterance, and the early transcriber that heard it (if any)."""

    audio: np.ndarray
    early: Any = None


class Listener:
    """Finds speech in 16 kHz mono blocks."""

    def __init__(self, options: ListenOptions | None = None,
                 on_level: Callable[[float], None] | None = None):
        self.options = options or ListenOptions()
        self.vad = VoiceActivity(self.options.sensitivity)
        self.on_level = on_level or (lambda level: None)

    def hands_free(self, blocks: Iterable[np.ndarray],
                   on_speech: Callable[[Boundary], None] | None = None
                   ) -> Iterator[np.ndarray]:
        """Yield each utterance (pre-roll included) as the segmenter hears its end.

        ``on_speech`` hears ``Boundary.STARTED`` / ``Boundary.ENDED`` as they happen.
        """
        for heard in self.utterances(blocks, on_speech):
            yield heard.audio

    def utterances(self, blocks: Iterable[np.ndarray],
                   on_speech: Callable[[Boundary], None] | None = None,
                   early: Callable[[], Any] | None = None) -> Iterator[Heard]:
        """Like :meth:`hands_free`, each utterance with the transcriber that heard it.

        With ``early`` (a factory of engine.asr.incremental's transcriber), each utterance is
        fed to a transcriber of its own frame by frame, which decodes it during the
        segmenter's closing silence; the utterance is then trimmed with that transcriber's
        verdicts, so the decode done early is the decode of exactly this audio.
        """
        opened: list[Any] = []

        def make() -> Any:
            opened.append(early() if early is not None else None)
            return opened[-1]

        try:
            yield from self._utterances(blocks, on_speech, make if early is not None else None)
        except BaseException:  # the microphone failed, or the caller stopped listening
            if opened and opened[-1] is not None:
                opened[-1].close()  # the utterance under way will never reach a turn
            raise

    def _utterances(self, blocks: Iterable[np.ndarray],
                    on_speech: Callable[[Boundary], None] | None,
                    early: Callable[[], Any] | None) -> Iterator[Heard]:
        tell = on_speech or (lambda kind: None)
        transcriber: Any = None
        opts = self.options.segmenter
        slicer = FrameSlicer(FRAME_MS)
        segmenter = Segmenter(opts)
        # Enough frames to hold the pre-roll plus the voiced run that triggered the start.
        ring: deque[np.ndarray] = deque(
            maxlen=max(1, round((opts.pre_roll_s + opts.start_s) / slicer.frame_seconds)))
        utterance: list[np.ndarray] | None = None
        for block in blocks:
            self.on_level(dbfs(block))
            for frame in slicer.push(block):
                event = segmenter.process(slicer.frame_seconds, self.vad.is_speech(frame))
                if utterance is None:
                    ring.append(frame)
                    if event is Boundary.STARTED:
                        tell(Boundary.STARTED)
                        utterance = list(ring)
                        ring.clear()
                        transcriber = early() if early is not None else None
                        for earlier in utterance if transcriber is not None else ():
                            transcriber.push(earlier)
                    continue
                utterance.append(frame)
                if transcriber is not None:
                    transcriber.push(frame)
                if event is Boundary.ENDED:
                    tell(Boundary.ENDED)
                    yield self._heard(utterance, transcriber)
                    utterance, transcriber = None, None
        if utterance:  # the source ended mid-utterance (file end, device lost): keep it
            tell(Boundary.ENDED)
            yield self._heard(utterance, transcriber)
        elif transcriber is not None:
            transcriber.close()

    def _heard(self, frames: list[np.ndarray], transcriber: Any) -> Heard:
        audio = np.concatenate(frames)
        if transcriber is None:
            return Heard(audio)
        try:
            return Heard(self.trim(audio, transcriber.verdicts), transcriber)
        except NoSpeechError:  # its own detector heard less than the segmenter's: decode as is
            transcriber.close()
            return Heard(audio)

    def trim(self, audio: np.ndarray, verdicts: list[bool] | None = None) -> np.ndarray:
        """Push-to-talk: cut silence at both ends, keeping a margin.

        ``verdicts`` are the VAD's per-frame verdicts already taken while recording (the
        early transcriber's); with them the cut is the one that transcriber decoded.

        Raises:
            NoSpeechError: nothing voiced in the recording.

        """
        n = SAMPLE_RATE * FRAME_MS // 1000
        if verdicts is None:
            verdicts = [self.vad.is_speech(audio[i * n:(i + 1) * n])
                        for i in range(len(audio) // n)]
        bounds = speech_bounds(verdicts, len(audio), self.options)
        if bounds is None:
            raise NoSpeechError("No speech heard.",
                                hint="Hold the talk key while you speak, a little closer "
                                     "to the microphone.")
        return audio[bounds[0]:bounds[1]]


def speech_bounds(verdicts: list[bool], samples: int,
                  options: ListenOptions) -> tuple[int, int] | None:
    """Sample range of the speech in a recording of ``samples`` given 30 ms frame verdicts.

    The voiced frames' span plus ``margin_s`` each side; None when there is less than
    ``min_speech_s`` of voiced audio. Push-to-talk's trim and the early transcriber share it,
    so both cut a recording at exactly the same samples.
    """
    n = SAMPLE_RATE * FRAME_MS // 1000
    voiced = [i for i, speech in enumerate(verdicts) if speech]
    if not voiced or len(voiced) * FRAME_MS / 1000 < options.min_speech_s:
        return None
    margin = int(options.margin_s * SAMPLE_RATE)
    return max(0, voiced[0] * n - margin), min(samples, (voiced[-1] + 1) * n + margin)


class PushToTalk:
    """Press to start recording from a microphone, release to get the trimmed utterance."""

    def __init__(self, microphone, listener: Listener,
                 early: Callable[[], Any] | None = None):
        self.microphone = microphone
        self.listener = listener
        # Makes engine.asr.incremental's transcriber for each press: it hears each block as it
        # comes and decodes at the pauses; release hands it to the turn (``early``).
        self._make_early = early
        self.early: Any = None
        self._blocks: list[np.ndarray] = []
        self._thread: threading.Thread | None = None
        self.error: TalkError | None = None  # set if the device failed mid-recording

    def press(self) -> None:
        """Start recording."""
        self._blocks, self.error = [], None
        self.microphone.start()
        self.early = self._make_early() if self._make_early is not None else None
        self._thread = threading.Thread(target=self._collect, name="capture-ptt", daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        try:
            for block in self.microphone.blocks():
                self._blocks.append(block)
                if self.early is not None:
                    self.early.push(block)
                self.listener.on_level(dbfs(block))
        except TalkError as err:  # device lost: keep what was captured, report on release
            self.error = err

    def cancel(self) -> None:
        """Stop recording and throw the audio away (the app is closing)."""
        self.microphone.stop()
        if self._thread is not None:
            self._thread.join()
        self._blocks = []
        if self.early is not None:
            self.early.close()

    def release(self) -> np.ndarray:
        """Stop recording; the speech, trimmed (``error`` tells if the device failed).

        Raises:
            NoSpeechError: the recording holds no speech.

        """
        try:
            return self._release()
        except BaseException:  # no turn will take the early transcriber: stop its thread
            if self.early is not None:
                self.early.close()
            raise

    def _release(self) -> np.ndarray:
        self.microphone.stop()
        if self._thread is not None:
            self._thread.join()
        drained = self.microphone.drain()
        blocks = self._blocks + drained
        audio = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
        if self.early is None:
            return self.listener.trim(audio)
        for block in drained:
            self.early.push(block)
        # Cut with the verdicts the early transcriber decoded with: the same samples.
        return self.listener.trim(audio, self.early.verdicts)
