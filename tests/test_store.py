"""The conversation store and the chat session that writes to it."""

from __future__ import annotations

import sqlite3

import pytest

from engine.chat.types import CancelToken
from engine.conversation import ChatSession
from engine.errors import ChatError, StoreError
from engine.store import ConversationStore


class ScriptedChat:
    """A fake backend: streams the given pieces, records the histories it was asked about."""

    def __init__(self, *pieces: str, fail_after: int | None = None):
        self.pieces = pieces
        self.fail_after = fail_after
        self.histories = []

    def reply(self, history, *, cancel=None):
        return "".join(self.stream_reply(history, cancel=cancel))

    def stream_reply(self, history, *, cancel=None):
        self.histories.append(list(history))
        for i, piece in enumerate(self.pieces):
            if self.fail_after is not None and i == self.fail_after:
                raise ChatError("model exploded")
            if cancel is not None and cancel.cancelled:
                return
            yield piece


@pytest.fixture
def store(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3")
    yield store
    store.close()


def test_turns_round_trip_and_title(store):
    session = ChatSession(store, ScriptedChat("Hi", " there"), "tiny")
    assert "".join(session.send("  Hello bot  ")) == "Hi there"
    turns = store.turns(session.conversation_id)
    assert [(t.role, t.text, t.status) for t in turns] == [
        ("user", "Hello bot", "done"), ("assistant", "Hi there", "done")]
    assert store.conversations()[0].title == "Hello bot"
    assert all(t.persona == "tiny" for t in turns)


def test_history_reaches_the_backend_and_survives_reopening(store, tmp_path):
    backend = ScriptedChat("ok")
    session = ChatSession(store, backend, "tiny")
    list(session.send("one"))
    list(session.send("two"))
    assert [t.text for t in backend.histories[-1]] == ["one", "ok", "two"]
    reopened = ConversationStore(tmp_path / "c.sqlite3")
    again = ChatSession(reopened, backend, "tiny", session.conversation_id)
    assert [t.text for t in again.history] == ["one", "ok", "two", "ok"]
    reopened.close()


def test_each_piece_is_stored_before_it_is_shown(store):
    session = ChatSession(store, ScriptedChat("a", "b", "c"), "tiny")
    shown = []
    for piece in session.send("go"):
        shown.append(piece)
        stored = store.turns(session.conversation_id)[-1]
        assert (stored.role, stored.text, stored.status) == ("assistant", "".join(shown),
                                                             "streaming")
    assert shown == ["a", "b", "c"]  # every piece was shown (and so checked above)
    assert store.turns(session.conversation_id)[-1].status == "done"


def test_closing_a_reply_keeps_what_was_shown_as_cut(store):
    session = ChatSession(store, ScriptedChat("a", "b", "c"), "tiny")
    stream = session.send("go")
    next(stream)
    stream.close()
    last = store.turns(session.conversation_id)[-1]
    assert (last.text, last.status) == ("a", "cut")
    assert session.history[-1].text == "a"


def test_cancel_token_marks_cut(store):
    cancel = CancelToken()
    session = ChatSession(store, ScriptedChat("a", "b", "c"), "tiny")
    for piece in session.send("go", cancel=cancel):
        if piece == "a":
            cancel.cancel()
    assert store.turns(session.conversation_id)[-1].status == "cut"


def test_backend_failure_keeps_user_turn_and_partial_reply(store):
    session = ChatSession(store, ScriptedChat("a", "b", "c", fail_after=2), "tiny")
    with pytest.raises(ChatError):
        list(session.send("go"))
    turns = store.turns(session.conversation_id)
    assert [(t.role, t.text, t.status) for t in turns] == [
        ("user", "go", "done"), ("assistant", "ab", "cut")]
    assert turns[-1].meta == {"error": "chat_failed"}


def test_a_failure_before_any_reply_is_stored_as_no_reply_and_stays_out_of_history(store):
    session = ChatSession(store, ScriptedChat("a", fail_after=0), "tiny")
    with pytest.raises(ChatError):
        list(session.send("anyone there?"))
    turns = store.turns(session.conversation_id)
    assert [(t.role, t.text, t.status) for t in turns] == [
        ("user", "anyone there?", "done"), ("assistant", "", "failed")]
    assert turns[-1].meta == {"error": "chat_failed", "message": "model exploded"}
    again = ChatSession(store, ScriptedChat("ok"), "tiny", session.conversation_id)
    assert [t.role for t in again.history] == ["user"]  # the empty failure is not a turn


def test_empty_message_is_refused(store):
    session = ChatSession(store, ScriptedChat("x"), "tiny")
    with pytest.raises(ChatError) as caught:
        session.send("   \n ")
    assert caught.value.code == "empty_input"
    assert store.turns(session.conversation_id) == []


def test_streaming_reply_of_a_dead_process_reads_as_cut(tmp_path):
    first = ConversationStore(tmp_path / "c.sqlite3")
    cid = first.new_conversation("tiny")
    first.add_turn(cid, "assistant", "half a rep", "tiny", status="streaming")
    # no close(): the process "died"
    second = ConversationStore(tmp_path / "c.sqlite3")
    assert second.turns(cid)[-1].status == "cut"
    second.close()
    first.close()


def test_database_is_wal(store):
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_corrupt_database_is_a_clear_error(tmp_path):
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as caught:
        ConversationStore(path)
    assert "Cannot open the conversation database" in caught.value.message


def test_rename_and_delete(store):
    cid = store.new_conversation("tiny")
    store.add_turn(cid, "user", "hi", "tiny")
    store.rename(cid, "Greeting")
    assert store.conversations()[0].title == "Greeting"
    store.delete_conversation(cid)
    assert store.conversations() == [] and store.turns(cid) == []
