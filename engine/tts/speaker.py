"""Speaking a streamed reply: split it into sentences, synthesise each, play them in order.

Synthesis runs on its own thread, so sentence n+1 is synthesised while sentence n plays and
while the chat model is still generating; the player keeps the order.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from engine.errors import TalkError
from engine.tts.text import SentenceSplitter


class Speaker:
    """Feed reply text as it streams; it is spoken sentence by sentence."""

    def __init__(self, tts: Any, player: Any, voice: Any | None = None):
        self.tts, self.player, self.voice = tts, player, voice
        self._splitter = SentenceSplitter()
        self._pieces: queue.Queue[str | None] = queue.Queue()
        self._stopped = threading.Event()
        self.error: TalkError | None = None
        self._thread = threading.Thread(target=self._run, name="tts-speaker", daemon=True)
        self._thread.start()

    def feed(self, text: str) -> None:
        """Add streamed reply text."""
        for piece in self._splitter.feed(text):
            self._pieces.put(piece)

    def finish(self, wait: bool = True) -> None:
        """The reply is complete: speak the rest; optionally wait until it has been played."""
        for piece in self._splitter.flush():
            self._pieces.put(piece)
        self._pieces.put(None)
        self._thread.join()
        if wait and not self._stopped.is_set():
            self.player.wait()

    def stop(self) -> None:
        """Stop speaking now (barge-in, Ctrl-C): drop what is queued and what plays."""
        self._stopped.set()
        self._pieces.put(None)
        self.player.stop()
        self._thread.join()

    def _run(self) -> None:
        while (piece := self._pieces.get()) is not None:
            if self._stopped.is_set():
                break
            try:
                for chunk in self.tts.synthesize(piece, self.voice):
                    if self._stopped.is_set():
                        return
                    self.player.enqueue(chunk.samples, chunk.rate, chunk.text)
            except TalkError as err:
                self.error = err
                return
