"""Stage progress for a person (one updating terminal line) or a program (JSON lines).

Every report is a :class:`training.messages.ProgressMessage`; with ``--progress-json`` it is
written as the protocol's line, otherwise as the words a person reads in a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from training.messages import ProgressMessage


class Reporter:
    """Stage progress for a person (one updating line) or a program (JSON lines)."""

    def __init__(self, as_json: bool, out=None):
        self.as_json = as_json
        self.out = out or sys.stdout
        self._last_line = 0.0

    def emit(self, stage: str, event: str, **data: Any) -> None:
        """Report ``event`` ("start", "progress", "done", "skip", "note") of ``stage``."""
        self.send(ProgressMessage.of(stage, event, **data))

    def send(self, message: ProgressMessage) -> None:
        """Report one message."""
        if self.as_json:
            print(message.to_json(), file=self.out, flush=True)
            return
        if message.event == "progress":
            now = time.monotonic()
            if now - self._last_line < 0.2 and message.done != message.total:
                return  # a terminal line per 0.2 s is plenty
            self._last_line = now
            print(f"\r  {progress_text(message)}\033[K", end="", file=self.out, flush=True)
        elif message.event == "start":
            print(f"[{message.stage}] {message.text or ''}", file=self.out, flush=True)
        elif message.event in ("done", "skip", "note"):
            if self._last_line:
                print(file=self.out)
                self._last_line = 0.0
            print(f"[{message.stage}] {message.text or ''}", file=self.out, flush=True)

    def progress(self, stage: str) -> Callable[..., None]:
        """A callback for a stage's own progress reports."""
        def report(*args: Any) -> None:
            if len(args) == 1 and isinstance(args[0], dict):
                self.emit(stage, "progress", **args[0])
            elif len(args) >= 2:
                self.emit(stage, "progress", done=args[0], total=args[1],
                          **({"title": str(args[2])[:60]} if len(args) > 2 else {}))
            else:
                self.emit(stage, "progress", done=args[0] if args else 0)
        return report


def progress_text(message: ProgressMessage) -> str:
    """A progress message as a terminal line: a training step, or a count and its title."""
    if message.step is not None:  # training
        total = message.total_steps if message.total_steps is not None else "?"
        parts = [f"step {message.step}/{total}"]
        if message.loss is not None:
            parts.append(f"loss {message.loss:.3f}")
        if message.tokens_per_s:
            parts.append(f"{message.tokens_per_s:.0f} tok/s")
        if message.eta_s is not None:
            parts.append(f"ETA {format_duration(message.eta_s)}")
        return " · ".join(parts)
    done, count = message.done or 0, message.total
    text = f"{done}/{count}" if count else f"{done}"
    return f"{text} {message.title or ''}".rstrip()


def format_duration(seconds: float) -> str:
    """4m05s / 1h02m: an ETA for people."""
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s")
