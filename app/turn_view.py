"""Renders the pipeline's events for one turn: the chat, the stage line, Stop, the timings.

The window wires :meth:`TurnView.on_event` to the controller's ``pipeline_event`` signal. Only the
events of the turn the chat view shows change it; a turn that was stopped, or that belongs to a
conversation no longer shown, winds down unseen.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel, QPushButton, QWidget

from app.widgets.banner import Banner
from app.widgets.chat_view import ChatView, Message
from app.widgets.level_meter import LevelMeter
from engine.errors import TalkError
from engine.pipeline.events import Event, EventType

if TYPE_CHECKING:
    from app.controller import Controller

STAGE_TEXT = {
    EventType.LISTENING: "Listening…",
    EventType.SPEECH_STARTED: "Hearing you…",
    EventType.SPEECH_ENDED: "Transcribing…",
    EventType.TRANSCRIPT: "Thinking…",
    EventType.REPLY_TOKEN: "Replying…",
    EventType.SPEAKING_STARTED: "Speaking…",
}
# Events that belong to one turn (they carry data["turn"]); others are capture-side.
TURN_EVENTS = {EventType.TRANSCRIPT, EventType.REPLY_TOKEN, EventType.REPLY_DONE,
               EventType.SPEAKING_STARTED, EventType.SPEAKING_ENDED, EventType.TURN_DONE,
               EventType.ERROR, EventType.CANCELLED}
TIMING_LABELS = (("asr", "heard"), ("first_token", "first word"), ("first_audio", "first audio"),
                 ("total", "total"))
# The stage an ERROR names → the banner's title for it, and the banner topic it belongs to.
ERROR_TITLES = {"transcribe": "Speech recognition", "chat": "Reply", "tts": "Voice"}
ERROR_TOPICS = {"transcribe": "asr", "chat": "chat", "tts": "voice"}


class TurnView(QObject):
    """Turns pipeline events into changes of the window's chat, status line and Stop button."""

    def __init__(self, controller: Controller, *, chat_view: ChatView, stage_label: QLabel,
                 timings_label: QLabel, stop_button: QPushButton, banner: Banner,
                 level_meter: LevelMeter, focus_after_stop: QWidget,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.controller = controller
        self.chat_view = chat_view
        self.stage_label = stage_label
        self.timings_label = timings_label
        self.stop_button = stop_button
        self.banner = banner
        self.level_meter = level_meter
        self.focus_after_stop = focus_after_stop  # where Stop's keyboard focus goes when it greys
        self.turn: int | None = None  # the pipeline turn whose events the chat view shows
        self._shown_since = 0.0  # turns started before this (perf_counter) belong to another view

    def forget_turn(self) -> None:
        """The view now shows another conversation: ignore the events of every turn so far.

        Call it once the controller has switched. A turn still winding down, or one started by
        a message sent just before the switch (whose start event is still queued for this
        thread), belongs to the previous conversation.
        """
        self.turn = None
        self._shown_since = time.perf_counter()

    def on_event(self, event: Event) -> None:
        """Render one pipeline event."""
        if self.controller.closed:
            return
        kind, data = event.type, event.data
        if kind == EventType.LEVEL:
            self.level_meter.set_level(data.get("dbfs", -60.0))
            return
        if kind == EventType.TURN_STARTED:
            if event.t < self._shown_since:
                return  # started in the conversation shown before
            self.turn = data.get("turn")
        elif kind in TURN_EVENTS and data.get("turn") != self.turn:
            return  # from a turn that was stopped, or belongs to another conversation
        if kind in STAGE_TEXT and not self.controller.talking:
            self.stage_label.setText(STAGE_TEXT[kind])
        if kind == EventType.TURN_STARTED:
            self._turn_started(data.get("spoken"), data.get("text", ""))
        elif kind == EventType.TRANSCRIPT:
            self.chat_view.add_message(Message("user", data.get("text", ""), time.time()))
        elif kind == EventType.REPLY_TOKEN:
            self.chat_view.append_reply(data.get("text", ""))
        elif kind == EventType.REPLY_DONE:
            self.chat_view.end_reply(cut=bool(data.get("cut")))
        elif kind == EventType.TURN_DONE:
            self._turn_done(event)
        elif kind == EventType.ERROR:
            self._turn_failed(event)
        elif kind == EventType.CANCELLED and not self.controller.talking:
            self.stage_label.setText(f"Stopped ({data.get('reason', 'interrupted')}).")

    def _turn_started(self, spoken: bool | None, text: str) -> None:
        if self.chat_view.streaming:  # an interrupted reply whose end we have not seen
            self.chat_view.end_reply(cut=True)
        if not spoken:
            self.chat_view.add_message(Message("user", text, time.time()))
            self.stage_label.setText("Thinking…")
        self.stop_button.setEnabled(True)

    def _turn_done(self, event: Event) -> None:
        data = event.data
        last = self.chat_view.messages[-1] if self.chat_view.messages else None
        if data.get("cut") and last is not None and last.role == "assistant" and (
                last.text != data.get("reply", last.text)):
            # A spoken reply is kept as what the voice said before it was cut.
            last.text = data.get("reply", "")
            self.chat_view.set_messages(list(self.chat_view.messages))
        self.disable_stop()
        self.set_idle_stage()
        self.timings_label.setText(timings_text(data.get("timings", {})))
        # A turn went through: what stopped earlier ones (no speech, server down) is gone.
        self.banner.clear("chat", "asr", "talk")

    def _turn_failed(self, event: Event) -> None:
        data = event.data
        self.chat_view.end_reply(failed=True)
        last = self.chat_view.messages[-1] if self.chat_view.messages else None
        if data.get("stage") == "chat" and last is not None and last.role == "user":
            # Stored the same way (engine.conversation): the question is not left hanging.
            self.chat_view.add_message(Message("assistant", "", time.time(), "failed"))
        self.disable_stop()
        stage = ERROR_TITLES.get(data.get("stage", ""), "Error")
        err = TalkError(data.get("message", "Something went wrong."), hint=data.get("hint"),
                        code=data.get("code"))
        self.banner.show_message(err, "warning" if stage == "Voice" else "error", stage,
                                 topic=ERROR_TOPICS.get(data.get("stage", "")))
        self.set_idle_stage()

    def disable_stop(self) -> None:
        """The reply is over: Stop greys out, and its keyboard focus goes to the message box.

        Qt would hand it to the next widget in the chain: the conversation search.
        """
        had_focus = self.stop_button.hasFocus()
        self.stop_button.setEnabled(False)
        if had_focus:
            self.focus_after_stop.setFocus()

    def set_idle_stage(self) -> None:
        """Show what happens between turns: listening (held key or hands-free) or ready."""
        if self.controller.talking:
            self.stage_label.setText("Listening…")
        else:
            self.stage_label.setText("Listening…" if self.controller.hands_free else "Ready")


def timings_text(timings: dict[str, float]) -> str:
    """The status line's summary of a turn's latencies ("" when it has none)."""
    parts = [f"{label} {timings[key]:.2f} s" for key, label in TIMING_LABELS if key in timings]
    return "Last turn: " + " · ".join(parts) if parts else ""
