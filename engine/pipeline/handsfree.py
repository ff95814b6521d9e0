"""Hands-free listening: the voice detector cuts utterances and each one becomes a turn.

Shared by the terminal ``talk --hands-free`` and the window's hands-free toggle. Runs on its own
thread; :meth:`HandsFree.stop` ends it by stopping the microphone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.audio.segmenter import Boundary
from engine.errors import TalkError
from engine.pipeline import events as ev

if TYPE_CHECKING:
    from engine.audio.listener import Listener
    from engine.pipeline.turns import VoicePipeline


class HandsFree:
    """Feeds a microphone through a Listener into a VoicePipeline until stopped.

    The listener's speech boundaries come to this object per run (an argument of
    ``Listener.hands_free``), so one listener serves push-to-talk and hands-free alike.
    """

    def __init__(self, pipeline: VoicePipeline, microphone: Any, listener: Listener, *,
                 headphones: bool = False,
                 on_error: Callable[[TalkError], None] | None = None):
        self.pipeline, self.microphone, self.listener = pipeline, microphone, listener
        self.headphones = headphones
        self.on_error = on_error or (lambda err: None)
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether it is listening."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Open the microphone (errors raise here, on the caller's thread) and listen."""
        self.microphone.start()
        self.pipeline.emit(ev.LISTENING)
        self._thread = threading.Thread(target=self.run, name="capture-hands-free",
                                        daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Listen on this thread until the microphone stops (or fails: ``on_error``)."""
        try:
            for heard in self.listener.utterances(self._muted(self.microphone.blocks()),
                                                  on_speech=self._on_speech, early=self._early):
                self.pipeline.start_audio_turn(heard.audio, time.perf_counter(),
                                               early=heard.early)
        except TalkError as err:
            self.on_error(err)
        finally:
            self.microphone.stop()

    def stop(self) -> None:
        """Stop listening and wait for the thread (a running turn goes on)."""
        self.microphone.stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _early(self) -> Any:
        """A transcriber for the utterance just started (None without a recognizer).

        It decodes during the segmenter's closing silence, so the end of speech finds the words
        (nearly) ready.
        """
        from engine.asr.incremental import IncrementalTranscriber

        recognizer = self.pipeline.recognizer
        if recognizer is None:
            return None
        return IncrementalTranscriber(recognizer, gate=self.pipeline.gate,
                                      options=self.listener.options)

    def _on_speech(self, boundary: Boundary) -> None:
        started = boundary is Boundary.STARTED
        self.pipeline.emit(ev.SPEECH_STARTED if started else ev.SPEECH_ENDED)
        if self.headphones and started and self.pipeline.busy:
            self.pipeline.barge_in("you started talking")

    def _muted(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Silence the microphone while the assistant speaks (unless on headphones).

        Without echo cancellation the microphone hears the speaker, and the voice detector would
        take the assistant's own voice for the user's. Silence (not nothing) keeps the
        detector's timing intact.
        """
        for block in blocks:
            player = self.pipeline.player
            speaking = player is not None and not player.wait(0)
            yield np.zeros_like(block) if speaking and not self.headphones else block
