"""Printing pipeline events in a terminal (``chat`` and ``talk``).

A view only: when a turn is over is the turn's own business (``TurnRun.wait``), never a printer's.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from engine.pipeline.events import Event, EventType


def level_bar(level: float, width: int = 30) -> str:
    """A text meter for a level in dBFS: empty at -60 dBFS and below, full at 0."""
    return "#" * int(max(0.0, min(1.0, (level + 60) / 60)) * width)


class EventPrinter:
    """Prints pipeline events; called from the pipeline's threads.

    Args:
        out: where replies go (errors go to stderr).
        timings: print each turn's stage timings after it.

    """

    def __init__(self, out: TextIO | None = None, *, timings: bool = True):
        self.out = out or sys.stdout
        self.timings = timings
        self._lock = threading.Lock()
        self._in_reply = False  # a "bot> " line is open
        self._cancelled = False  # this turn was stopped (its end closes the line quietly)
        self._echo: str | None = None

    def echo_next(self, text: str) -> None:
        """Show ``you> text`` for the next typed turn, once its message is stored.

        (The first sign of that is the reply's first piece, its end, or its failure: a kill -9
        can then never leave a message on screen that the store does not have.)
        """
        with self._lock:
            self._echo = text

    def __call__(self, event: Event) -> None:
        """Print one event (reply pieces inline, a timing line at the end of a turn)."""
        with self._lock:
            kind, data = event.type, event.data
            if kind in (EventType.REPLY_TOKEN, EventType.REPLY_DONE, EventType.ERROR):
                self._flush_echo()
            if kind == EventType.TURN_STARTED:
                self._cancelled = False
            elif kind == EventType.TRANSCRIPT:
                self._print(f"\nyou> {data['text']}")
            elif kind == EventType.REPLY_TOKEN:
                if not self._in_reply:
                    self._print("bot> ", end="")
                    self._in_reply = True
                self._print(data["text"], end="")
            elif kind == EventType.REPLY_DONE:
                if self._in_reply:
                    self._print("")
                elif not self._cancelled:  # an empty reply still shows who (did not) answer
                    self._print("bot> ")
                self._in_reply = False
            elif kind == EventType.ERROR:
                if self._in_reply:
                    self._print("")
                    self._in_reply = False
                print(f"error ({data['stage']}): {data['message']}", file=sys.stderr,
                      flush=True)
                if data.get("hint"):
                    print(f"  {data['hint']}", file=sys.stderr, flush=True)
            elif kind == EventType.CANCELLED:
                # Ctrl-C stops the reply where it stands; anything else interrupts it. Within
                # a streaming reply the mark ends its line (the reply's end closes it).
                mark = "[stopped]" if data["reason"] == "Ctrl-C" else "[interrupted]"
                self._print(f" {mark}" if self._in_reply else mark,
                            end="" if self._in_reply else "\n")
                self._cancelled = True
            elif kind == EventType.TURN_DONE and self.timings:
                t = data["timings"]
                parts = [f"{name.replace('_', ' ')} {t[name]:.2f} s" for name in
                         ("asr", "first_token", "first_audio", "total") if name in t]
                self._print(f"  [{' · '.join(parts)}]")

    def _flush_echo(self) -> None:
        if self._echo is not None:
            self._print(f"you> {self._echo}")
            self._echo = None

    def _print(self, text: str, end: str = "\n") -> None:
        print(text, end=end, file=self.out, flush=True)
