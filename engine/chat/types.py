"""Plain data passed between the chat stage and its callers."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Turn:
    """One utterance of a conversation."""

    role: Role
    text: str


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


class ChatModel(Protocol):
    """What every chat backend offers."""

    def reply(self, history: Sequence[Turn], *, cancel: CancelToken | None = None) -> str:
        """Return the whole reply to the last user turn of ``history``."""
        ...

    def stream_reply(
        self, history: Sequence[Turn], *, cancel: CancelToken | None = None
    ) -> Iterator[str]:
        """Yield the reply as it is generated; stops early when ``cancel`` is set or closed."""
        ...
