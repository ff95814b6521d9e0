"""A conversation with one persona: history, the chat backend, and the store, kept in step.

The CLI and (later) the GUI drive this; it never prints. Every piece of a reply is written to the
store before it is handed to the caller to show.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, cast

from engine.cancel import CancelToken
from engine.chat.types import ChatModel, Role, Turn
from engine.errors import ChatError, TalkError
from engine.store import ConversationStore


class ChatSession:
    """Holds the current conversation and sends user turns to the backend."""

    def __init__(self, store: ConversationStore, backend: ChatModel, persona_id: str,
                 conversation_id: int | None = None):
        self.store = store
        self.backend = backend
        self.persona_id = persona_id
        self.conversation_id = conversation_id or store.new_conversation(persona_id)
        self.last_reply_id: int | None = None  # the store id of the newest reply
        self.history: list[Turn] = _history(store, self.conversation_id)

    def open_conversation(self, conversation_id: int) -> None:
        """Continue a stored conversation: its turns become the history."""
        self.conversation_id = conversation_id
        self.last_reply_id = None
        self.history = _history(self.store, conversation_id)

    def new_conversation(self) -> int:
        """Start afresh (the old conversation stays in the store)."""
        self.conversation_id = self.store.new_conversation(self.persona_id)
        self.history = []
        return self.conversation_id

    def switch_backend(self, backend: ChatModel, persona_id: str) -> None:
        """Talk to another persona from the next turn on, keeping the history."""
        self.backend, self.persona_id = backend, persona_id

    def cut_reply(self, spoken: str, meta: dict[str, Any] | None = None) -> None:
        """Barge-in: the newest reply becomes what was actually spoken, marked cut."""
        spoken = spoken.strip()
        if self.last_reply_id is not None:
            self.store.update_turn(self.last_reply_id, spoken, status="cut", meta=meta)
        if self.history and self.history[-1].role == "assistant":
            self.history.pop()
        if spoken:
            self.history.append(Turn("assistant", spoken))

    def annotate_reply(self, meta: dict[str, Any]) -> None:
        """Attach data (per-stage timings, voice) to the newest reply."""
        if self.last_reply_id is not None:
            self.store.update_turn_meta(self.last_reply_id, meta)

    def send(self, text: str, *, cancel: CancelToken | None = None,
             meta: dict[str, Any] | None = None,
             gate: Any = None) -> Generator[str, None, None]:
        """Store the user's turn, then yield the reply piece by piece, storing each first.

        Closing the iterator early (or ``cancel``) keeps what was shown, marked ``cut``.

        Raises:
            ChatError: empty input, or the backend failed (the user turn stays stored).

        """
        text = text.strip()
        self.last_reply_id = None
        if not text:
            raise ChatError("Nothing to send: the message is empty.", code="empty_input")
        self.store.add_turn(self.conversation_id, "user", text, self.persona_id, meta=meta)
        self.history.append(Turn("user", text))
        return self._reply(cancel or CancelToken(), gate)

    def _reply(self, cancel: CancelToken, gate: Any) -> Generator[str, None, None]:
        shown: list[str] = []
        turn_id: int | None = None
        status = "cut"
        error: TalkError | None = None
        try:
            # The device gate, when the voice pipeline shares the device with speech models,
            # goes to the backend with the request (a backend that needs none ignores it).
            extra = {"gate": gate} if gate is not None else {}
            for piece in self.backend.stream_reply(list(self.history), cancel=cancel, **extra):
                if not shown:
                    piece = piece.lstrip()
                    if not piece:
                        continue
                shown.append(piece)
                if turn_id is None:
                    turn_id = self.store.add_turn(self.conversation_id, "assistant", piece,
                                                  self.persona_id, status="streaming")
                    self.last_reply_id = turn_id
                else:
                    self.store.update_turn(turn_id, "".join(shown))
                yield piece
            status = "cut" if cancel.cancelled else "done"
        except TalkError as err:
            error = err
            raise
        except Exception as err:  # a model or tokenizer crash: stored as a failure all the same
            error = ChatError(f"The reply failed: {type(err).__name__}: {err}",
                              code="chat_crashed")
            raise
        finally:
            reply = "".join(shown).rstrip()
            if turn_id is not None:
                meta = {"error": error.code} if error else None
                self.store.update_turn(turn_id, reply, status=status, meta=meta)
            elif error is not None:
                # The user's message stays; a reopened conversation shows it got no reply
                # (and why), rather than a question hanging unanswered. Empty: not history.
                self.store.add_turn(self.conversation_id, "assistant", "", self.persona_id,
                                    status="failed",
                                    meta={"error": error.code, "message": error.message})
            if reply:
                self.history.append(Turn("assistant", reply))


def _history(store: ConversationStore, conversation_id: int) -> list[Turn]:
    """A stored conversation's turns with text, as chat history."""
    # The table's CHECK constraint keeps every stored role a Role ("user" or "assistant").
    return [Turn(cast(Role, t.role), t.text) for t in store.turns(conversation_id) if t.text]
