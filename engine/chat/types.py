"""Plain data passed between the chat stage and its callers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from engine.cancel import CancelToken

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Turn:
    """One utterance of a conversation."""

    role: Role
    text: str


class ChatModel(Protocol):
    """What every chat backend offers."""

    def reply(self, history: Sequence[Turn], *, cancel: CancelToken | None = None) -> str:
        """Return the whole reply to the last user turn of ``history``."""
        ...

    def stream_reply(
        self, history: Sequence[Turn], *, cancel: CancelToken | None = None, gate: Any = None
    ) -> Iterator[str]:
        """Yield the reply as it is generated; stops early when ``cancel`` is set or closed.

        ``gate`` (engine.pipeline.gate.DeviceGate) is held while the backend computes on this
        machine's device, and given up between decoding steps; a remote backend ignores it.
        """
        ...
