"""Fake backends that record what they received, for pipeline tests."""

from __future__ import annotations

import threading
import time

import numpy as np

from engine.asr.types import Transcript
from engine.errors import ChatError
from engine.tts.types import AudioChunk


class FakeRecognizer:
    def __init__(self, text: str = "hello there", fail: Exception | None = None):
        self.text, self.fail, self.received = text, fail, []

    def transcribe(self, audio):
        self.received.append(len(audio))
        if self.fail:
            raise self.fail
        return Transcript(self.text, "en", duration=len(audio) / 16000)


class FakeChat:
    """Streams scripted pieces, ``delay`` seconds apart; records the histories it saw."""

    def __init__(self, *pieces: str, delay: float = 0.0, fail_after: int | None = None):
        self.pieces, self.delay, self.fail_after, self.histories = pieces, delay, fail_after, []

    def reply(self, history, *, cancel=None):
        return "".join(self.stream_reply(history, cancel=cancel))

    def stream_reply(self, history, *, cancel=None, gate=None):
        self.histories.append([t.text for t in history])
        for i, piece in enumerate(self.pieces):
            if self.fail_after == i:
                raise ChatError("the model fell over")
            if cancel is not None and cancel.cancelled:
                return
            time.sleep(self.delay)
            yield piece


class FakeTTS:
    """Streams each sentence as ``chunks`` chunks of ``seconds``, ``chunk_delay`` s apart.

    ``stopped`` lists the sentences whose stream was closed before its last chunk.
    """

    rate = 24000
    model_id = "fake-tts"

    def __init__(self, seconds: float = 0.05, fail: Exception | None = None, *,
                 chunks: int = 1, chunk_delay: float = 0.0):
        self.seconds, self.fail, self.received = seconds, fail, []
        self.chunks, self.chunk_delay, self.stopped = chunks, chunk_delay, []

    def synthesize(self, text, voice=None):
        self.received.append(text)
        if self.fail:
            raise self.fail
        done = 0
        try:
            for _ in range(self.chunks):
                time.sleep(self.chunk_delay)
                yield AudioChunk(np.zeros(int(self.rate * self.seconds), np.float32),
                                 self.rate, text)
                done += 1
        finally:
            if done < self.chunks:
                self.stopped.append(text)


class FakePlayer:
    """Plays in (scaled) real time on a thread; reports like the real player."""

    latency = 0.0

    def __init__(self, speed: float = 1.0):
        self.speed = speed
        self.on_event = lambda kind, text: None
        self.played: list[str] = []
        self.chunks = 0  # audio chunks received
        # (seconds, text, starts a piece, ends it, listener); seconds < 0 closes the player.
        self._queue: list[tuple[float, str, bool, bool, object]] = []
        self._listener = None  # of the piece playing
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="fake-player", daemon=True)
        self._thread.start()

    def enqueue(self, samples, rate, text="", *, starts=True, ends=True, listener=None,
                cancel=None):
        with self._cond:
            if cancel is not None and cancel.cancelled:  # as the real player: a stopped turn's
                return
            self.chunks += 1
            self._queue.append((len(samples) / rate, text, starts, ends, listener))
            self._busy = True
            self._cond.notify_all()

    def end_piece(self, text="", cancel=None):
        with self._cond:
            if cancel is not None and cancel.cancelled:
                return
            self._queue.append((0.0, text, False, True, None))
            self._busy = True
            self._cond.notify_all()

    def stop(self):
        with self._cond:
            self._queue.clear()
            self._stop = True
            self._cond.notify_all()

    def wait(self, timeout=None):
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)

    def close(self):
        with self._cond:
            self._queue.append((-1.0, "", False, False, None))
            self._cond.notify_all()
        self._thread.join()

    def _run(self):
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue)
                seconds, text, starts, ends, listener = self._queue.pop(0)
                self._stop = False
            if seconds < 0:
                return
            if starts:
                self._listener = listener or self.on_event
                self._listener("speaking_started", text)
            deadline = time.monotonic() + seconds / self.speed
            with self._cond:
                self._cond.wait_for(lambda: self._stop, max(0.0, deadline - time.monotonic()))
                stopped = self._stop
            if stopped or ends:
                if not stopped:
                    self.played.append(text)
                (self._listener or self.on_event)("speaking_ended", text)
            with self._cond:
                if not self._queue:
                    self._busy = False
                    self._cond.notify_all()
