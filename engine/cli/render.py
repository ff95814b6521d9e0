"""Printing pipeline events in a terminal (``talk`` and ``chat --speak``)."""

from __future__ import annotations

import sys
import threading

from engine.pipeline import events as ev
from engine.pipeline.events import Event


def level_bar(level: float, width: int = 30) -> str:
    """A text meter for a level in dBFS: empty at -60 dBFS and below, full at 0."""
    return "#" * int(max(0.0, min(1.0, (level + 60) / 60)) * width)


class EventPrinter:
    """Prints pipeline events; called from the pipeline's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_reply = False
        self.turn_done = threading.Event()

    def __call__(self, event: Event) -> None:
        """Print one event (tokens inline, a timing line at the end of a turn)."""
        with self._lock:
            data = event.data
            if event.type == ev.TRANSCRIPT:
                print(f"\nyou> {data['text']}", flush=True)
            elif event.type == ev.REPLY_TOKEN:
                if not self._in_reply:
                    print("bot> ", end="", flush=True)
                    self._in_reply = True
                print(data["text"], end="", flush=True)
            elif event.type == ev.REPLY_DONE:
                print(" [cut]" if data["cut"] else "", flush=True)
                self._in_reply = False
            elif event.type == ev.ERROR:
                print(f"\nerror ({data['stage']}): {data['message']}", file=sys.stderr)
                if data.get("hint"):
                    print(f"  {data['hint']}", file=sys.stderr)
                if data["stage"] != "tts":  # a voice failure does not end the turn
                    self.turn_done.set()
            elif event.type == ev.CANCELLED:
                print("\n[interrupted]", flush=True)
            elif event.type == ev.TURN_DONE:
                t = data["timings"]
                parts = [f"{name.replace('_', ' ')} {t[name]:.2f} s" for name in
                         ("asr", "first_token", "first_audio", "total") if name in t]
                print(f"  [{' · '.join(parts)}]", flush=True)
                self.turn_done.set()
