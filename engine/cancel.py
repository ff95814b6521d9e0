"""Asking work on another thread to stop: one token, shared by chat, speech, pulls and training.

Its own module, below every stage, so any of them can take one without importing another.
"""

from __future__ import annotations

import threading


class CancelToken:
    """Asks a running reply to stop; thread-safe, one-shot."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the reply to stop as soon as possible."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()
