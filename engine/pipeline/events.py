"""The pipeline's one event stream: typed, frozen events through one callback.

Only the pipeline produces them (``VoicePipeline.emit`` for the capture side: listening, levels,
speech boundaries); the GUI and the CLI only render them; tests compare lists of them; the
benchmark reads their timestamps. Each kind has a fixed set of fields, checked when the event
is made, so a misspelt field fails where it is written, not where it is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class EventType(StrEnum):
    """What happened. The values are the stable names programs and logs see."""

    TURN_STARTED = "turn_started"
    LISTENING = "listening"
    LEVEL = "level"
    SPEECH_STARTED = "speech_started"
    SPEECH_ENDED = "speech_ended"
    TRANSCRIPT = "transcript"
    REPLY_TOKEN = "reply_token"
    REPLY_DONE = "reply_done"
    SPEAKING_STARTED = "speaking_started"
    SPEAKING_ENDED = "speaking_ended"
    TURN_DONE = "turn_done"
    ERROR = "error"
    CANCELLED = "cancelled"


# The fields of each kind (besides ``turn``: the number of the turn an event belongs to, which
# every turn event carries; capture events have none).
FIELDS: dict[EventType, frozenset[str]] = {
    EventType.TURN_STARTED: frozenset({"spoken", "text"}),  # text: the typed message, or ""
    EventType.LISTENING: frozenset(),
    EventType.LEVEL: frozenset({"dbfs"}),
    EventType.SPEECH_STARTED: frozenset(),
    EventType.SPEECH_ENDED: frozenset(),
    EventType.TRANSCRIPT: frozenset({"text", "final"}),
    EventType.REPLY_TOKEN: frozenset({"text"}),
    EventType.REPLY_DONE: frozenset({"text", "cut"}),
    EventType.SPEAKING_STARTED: frozenset({"text"}),  # one piece (sentence)
    EventType.SPEAKING_ENDED: frozenset({"text"}),
    EventType.TURN_DONE: frozenset({"user", "reply", "cut", "timings"}),
    EventType.ERROR: frozenset({"stage", "code", "message", "hint"}),
    EventType.CANCELLED: frozenset({"reason"}),
}
OPTIONAL = frozenset({"turn", "hint"})

# The module-level names the rest of the code reads (``ev.TURN_DONE``): the enum's members.
TURN_STARTED = EventType.TURN_STARTED
LISTENING = EventType.LISTENING
LEVEL = EventType.LEVEL
SPEECH_STARTED = EventType.SPEECH_STARTED
SPEECH_ENDED = EventType.SPEECH_ENDED
TRANSCRIPT = EventType.TRANSCRIPT
REPLY_TOKEN = EventType.REPLY_TOKEN
REPLY_DONE = EventType.REPLY_DONE
SPEAKING_STARTED = EventType.SPEAKING_STARTED
SPEAKING_ENDED = EventType.SPEAKING_ENDED
TURN_DONE = EventType.TURN_DONE
ERROR = EventType.ERROR
CANCELLED = EventType.CANCELLED

class Stage(StrEnum):
    """The part of a turn an ERROR names (and a failed turn's ``failed_stage``)."""

    TRANSCRIBE = "transcribe"
    CHAT = "chat"
    TTS = "tts"
    PIPELINE = "pipeline"  # a bug: the turn failed outside every stage


@dataclass(frozen=True)
class Event:
    """Something that happened; ``t`` is ``time.perf_counter()`` when it did.

    ``data`` holds the kind's fields (see :data:`FIELDS`), read-only.
    """

    type: EventType
    data: Mapping[str, Any] = field(default_factory=dict)
    t: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        kind = EventType(self.type)  # a plain string of a known kind is accepted, then typed
        given = set(self.data)
        expected = FIELDS[kind]
        missing = expected - OPTIONAL - given
        unknown = given - expected - OPTIONAL
        if missing or unknown:
            raise TypeError(f"{kind.value} event: missing {sorted(missing)}, "
                            f"unknown {sorted(unknown)}")
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "data", MappingProxyType(dict(self.data)))


EventSink = Callable[[Event], None]
