"""The pipeline's one event stream: frozen events through one callback.

The GUI and the CLI only render these; tests compare lists of them; the benchmark reads their
timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TURN_STARTED = "turn_started"  # data: spoken (bool), text (the typed message; "" if spoken)
LISTENING = "listening"
LEVEL = "level"  # data: dbfs
SPEECH_STARTED = "speech_started"
SPEECH_ENDED = "speech_ended"
TRANSCRIPT = "transcript"  # data: text, final
REPLY_TOKEN = "reply_token"  # data: text
REPLY_DONE = "reply_done"  # data: text, cut
SPEAKING_STARTED = "speaking_started"  # data: text (one piece)
SPEAKING_ENDED = "speaking_ended"  # data: text
TURN_DONE = "turn_done"  # data: timings (stage -> seconds), user, reply
ERROR = "error"  # data: stage, code, message
CANCELLED = "cancelled"  # data: reason


@dataclass(frozen=True)
class Event:
    """Something that happened in a turn; ``t`` is ``time.perf_counter()`` when it did."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    t: float = field(default_factory=time.perf_counter)


EventSink = Callable[[Event], None]
