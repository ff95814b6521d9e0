"""The ``--progress-json`` protocol: one :class:`ProgressMessage` per line, JSON on the wire.

The trainer writes its messages only through :meth:`ProgressMessage.to_json` and the app's
training dialog reads them only through :meth:`ProgressMessage.from_json`, so the two ends share
one definition. A line is a flat JSON object::

    {"stage": "train", "event": "progress", "step": 12, "total_steps": 96, "loss": 3.21, ...}

The fields either end relies on are typed attributes; whatever else a stage reports (the epoch,
the learning rate, the filter report, ...) travels in :attr:`ProgressMessage.data`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from training.errors import TrainingError

# What a message reports about its stage.
EVENTS = (
    "start",     # the stage begins; ``text`` says what it does
    "progress",  # a count (``done``/``total``), a training step or an evaluate phase
    "done",      # the stage finished (``status`` "cancelled": training stopped at a checkpoint)
    "skip",      # the stage was not run: its work is kept, not needed, or not wanted
    "note",      # a remark about the whole run (``stage`` "all"), e.g. where it stopped
    "error",     # the command failed: ``code``, ``message`` and ``hint`` of the error
)


class ProgressLineError(TrainingError):
    """A line that is not a valid progress message (not JSON, or not of this protocol)."""

    code = "progress_line_invalid"


@dataclass(frozen=True)
class ProgressMessage:
    """One report of the trainer: a stage, what happened to it, and its figures."""

    stage: str  # a name in training.runs.STAGES, "all" (the whole run), or "" (no stage yet)
    event: str  # one of EVENTS
    text: str | None = None  # what happened, in words (start, done, skip, note)
    # A counted stage's progress (the scrape's threads, evaluate's batches or replies).
    done: int | None = None  # items done so far
    total: int | None = None  # items in all (None: not known)
    title: str | None = None  # what the item is (a thread's title, an evaluate phase)
    phase: str | None = None  # evaluate: "load", "score" or "reply"
    model: str | None = None  # evaluate: "base" or "finetuned"
    # Training's progress ("progress"), and where it ended ("done").
    step: int | None = None  # optimizer steps done
    total_steps: int | None = None  # optimizer steps in all
    loss: float | None = None  # the latest training loss
    tokens_per_s: float | None = None  # training throughput in this session
    eta_s: float | None = None  # seconds left, estimated
    # A stage's outcome.
    status: str | None = None  # train done: "completed" or "cancelled"; export skip: "exists"
    persona: str | None = None  # export done: the new persona's id
    figures: Mapping[str, Any] | None = None  # evaluate done: what eval.json holds
    # An error ("error").
    code: str | None = None  # the error's stable code (TalkError.code)
    message: str | None = None  # the error, for people
    hint: str | None = None  # what to do about it
    # Everything else a stage reports (epoch, lr, report, counts, written, skipped, ...).
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, stage: str, event: str, **values: Any) -> ProgressMessage:
        """A message from keyword values: known fields are set, the rest go into ``data``.

        Raises:
            ProgressLineError: ``event`` is unknown or a field has the wrong type.

        """
        return _message({"stage": stage, "event": event, **values})

    @classmethod
    def from_error(cls, stage: str, code: str | None, message: str,
                   hint: str | None) -> ProgressMessage:
        """The "error" message of a failed command."""
        return cls(stage=stage, event="error", code=code, message=message, hint=hint)

    def to_json(self) -> str:
        """The message as one line of JSON (fields that are None are left out)."""
        line: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "data":
                line.update({k: v for k, v in value.items() if k not in line})
            elif value is not None:
                line[f.name] = dict(value) if isinstance(value, Mapping) else value
        return json.dumps(line)

    @classmethod
    def from_json(cls, line: str) -> ProgressMessage:
        """Read one line that :meth:`to_json` wrote.

        Raises:
            ProgressLineError: the line is not JSON, not an object, or not a valid message.

        """
        try:
            value = json.loads(line)
        except ValueError as err:
            raise ProgressLineError(f"Not a progress message (not JSON): {_clip(line)}",
                                    hint=str(err)) from err
        if not isinstance(value, dict):
            raise ProgressLineError(f"Not a progress message (not a JSON object): "
                                    f"{_clip(line)}")
        return _message(value)


# The type each typed field must have on the wire (None is always allowed but for these two).
_REQUIRED = ("stage", "event")
_INTS = ("done", "total", "step", "total_steps")
_NUMBERS = ("loss", "tokens_per_s", "eta_s")
_MAPPINGS = ("figures",)
_FIELDS = tuple(f.name for f in dataclasses.fields(ProgressMessage) if f.name != "data")


def _message(values: Mapping[str, Any]) -> ProgressMessage:
    """Check ``values`` (one wire object) and make its message."""
    for name in _REQUIRED:
        if not isinstance(values.get(name), str):
            raise ProgressLineError(f"A progress message needs a text {name!r}: "
                                    f"{_clip(values)}")
    if values["event"] not in EVENTS:
        raise ProgressLineError(f"Unknown progress event {values['event']!r} (known: "
                                f"{', '.join(EVENTS)}).")
    known: dict[str, Any] = {}
    for name in _FIELDS:
        value = values.get(name)
        if value is not None and not _fits(name, value):
            raise ProgressLineError(f"The progress field {name!r} has a wrong value "
                                    f"{_clip(value)} (stage {values['stage']!r}, event "
                                    f"{values['event']!r}).")
        known[name] = value
    data = {k: v for k, v in values.items() if k not in known}
    return ProgressMessage(**known, data=data)


def _fits(name: str, value: Any) -> bool:
    if name in _INTS:
        return isinstance(value, int) and not isinstance(value, bool)
    if name in _NUMBERS:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name in _MAPPINGS:
        return isinstance(value, Mapping)
    return isinstance(value, str)


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
