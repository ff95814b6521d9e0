"""One turn's run: everything that lives from a turn's start to its end, in one object.

A :class:`TurnRun` owns its cancel token, its stage timings, the pieces the voice has spoken and
the player it speaks through, and it emits the turn's events (each carrying the turn's number).
Three threads write to it (the turn's own thread, the speech-synthesis thread and the player's
event dispatcher), so its mutable parts sit behind one lock. It is also the handle a caller
waits on: :meth:`wait` returns when the turn is over, :attr:`result` says how it went.

The pipeline (engine/pipeline/turns.py) makes one per turn and never keeps turn state itself,
so an interrupted turn's late events (the player reporting the end of a cut sentence) reach the
run they belong to, not the next one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from engine.cancel import CancelToken
from engine.pipeline.events import Event, EventSink, EventType, Stage


@dataclass
class TurnResult:
    """What one turn did."""

    user: str = ""
    reply: str = ""
    cut: bool = False
    failed_stage: Stage | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds from the turn's start


class TurnRun:
    """One turn, spoken or typed, from its start (``started``: a perf_counter()) to its end.

    ``player`` is the player this turn speaks through (None: a text-only turn).
    """

    def __init__(self, number: int, started: float, sink: EventSink, *,
                 player: Any = None):
        self.number = number
        self.started = started
        self.cancel = CancelToken()
        self.player = player
        self.result = TurnResult()
        self._sink = sink
        self._lock = threading.Lock()
        self._timings: dict[str, float] = {}
        self._spoken: list[str] = []
        self._finished = threading.Event()

    # -- what happened ------------------------------------------------------------------------
    def emit(self, kind: EventType, **data: Any) -> None:
        """Report an event of this turn (a renderer's bug never breaks the turn)."""
        data.setdefault("turn", self.number)
        event = Event(kind, data)  # a wrong field is a bug in the pipeline: it raises here
        try:
            self._sink(event)
        except Exception:
            pass

    def mark(self, stage: str) -> None:
        """Record when ``stage`` first happened (seconds from the turn's start)."""
        now = time.perf_counter() - self.started
        with self._lock:
            self._timings.setdefault(stage, now)

    @property
    def timings(self) -> dict[str, float]:
        """A copy of the stage timings so far."""
        with self._lock:
            return dict(self._timings)

    @property
    def spoken(self) -> list[str]:
        """The pieces the voice has started saying, in order."""
        with self._lock:
            return list(self._spoken)

    def on_player(self, kind: str, text: str) -> None:
        """The player's report about a piece this turn queued (its dispatcher thread)."""
        if kind == "speaking_started":
            self.mark("first_audio")
            with self._lock:
                self._spoken.append(text)
            self.emit(EventType.SPEAKING_STARTED, text=text)
        else:
            self.emit(EventType.SPEAKING_ENDED, text=text)

    # -- ending -------------------------------------------------------------------------------
    def stop(self, reason: str) -> bool:
        """Interrupt the turn now: generation, synthesis and playback.

        Returns False when it was already over or already stopped.
        """
        with self._lock:  # two stops at once (hands-free and the window): one is reported
            if self.cancel.cancelled or self._finished.is_set():
                return False
            self.cancel.cancel()
        if self.player is not None:
            self.player.stop()
        self.emit(EventType.CANCELLED, reason=reason)
        return True

    def finish(self, result: TurnResult) -> None:
        """The turn is over (its thread calls this last)."""
        with self._lock:
            self.result = result
            self._finished.set()

    @property
    def done(self) -> bool:
        """Whether the turn is over."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the turn is over; False on timeout."""
        return self._finished.wait(timeout)
