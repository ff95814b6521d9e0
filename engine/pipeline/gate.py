"""One device, one model call at a time: speech recognition, chat and TTS never run together.

A gate per device (the GPU, or the CPU) replaces a single-worker executor: a model call holds
it for its duration, and the chat model's generation gives it up between decoding steps
(``yield_turn``), so a sentence can be synthesised while the rest of the reply is generated
without the two ever computing at the same moment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DeviceGate:
    """A fair lock: waiters are served in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._owner: int | None = None
        self._depth = 0
        self._queue: list[int] = []
        self.waiting = 0

    def acquire(self) -> None:
        """Take the device (re-entrant for the same thread)."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            self._queue.append(me)
            self.waiting += 1
            while self._owner is not None or self._queue[0] != me:
                self._cond.wait()
            self._queue.pop(0)
            self.waiting -= 1
            self._owner, self._depth = me, 1

    def release(self) -> None:
        """Give the device back."""
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def yield_turn(self) -> None:
        """Between two steps of a long call: let anyone waiting go first."""
        if self.waiting:
            self.release()
            self.acquire()

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` holding the device."""
        self.acquire()
        try:
            return fn(*args, **kwargs)
        finally:
            self.release()

    def __enter__(self) -> DeviceGate:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
