"""Bad typed turns: empty, huge, emoji, right-to-left, control characters, endless history."""

from __future__ import annotations

from tests.reliability.matrix import Case, Ctx, Got


def _send(ctx: Ctx, text: str, *, ok: bool) -> tuple[Got | None, list]:
    """``chat --continue -m TEXT`` after two stored turns; the earlier turns must survive.

    Returns the error the CLI printed (``None`` when ``ok`` and it replied) and what is stored.
    """
    conv = ctx.seed_store()
    result = ctx.cli("chat", "-p", ctx.tiny, "--continue", "-m", text)
    stored = ctx.assert_kept(conv)
    if ok and result.rc == 0:
        assert "Traceback" not in result.err
        return None, stored
    assert result.rc == 1
    return result.error(), stored  # when ``ok``, the row shows the error instead of the turn


def text_empty(ctx: Ctx) -> Got:
    got, stored = _send(ctx, "   \n\t ", ok=False)
    assert got is not None and len(stored) == 2  # nothing was added for the empty turn
    return got


def text_100kb(ctx: Ctx) -> Got:
    text = "weather " * 12800  # 100 kB
    got, stored = _send(ctx, text, ok=False)
    assert got is not None and stored[2].text == text.strip()  # kept even though refused
    return got


EMOJI = "😀🎉👍🏽🇫🇷"
RTL = "مرحبا، كيف حالك؟ שלום"
CONTROL_CHARS = "hi\x00there\x07\x08 you\x1f"


def _stored_as(text: str) -> str:
    r"""The row's expected text: the message stored as sent (ends stripped), the reply finished.

    Python's ``str.strip`` counts \x1c-\x1f as whitespace, so a trailing US goes too.
    """
    return f"user: {text.strip()!r}; assistant: done"


def _round_trip(ctx: Ctx, text: str) -> Got:
    """What the store holds after the turn: the user's text as saved, the reply's status."""
    got, stored = _send(ctx, text, ok=True)
    if got is not None:
        return got
    return Got("; ".join(f"{t.role}: {t.text!r}" if t.role == "user" else f"{t.role}: {t.status}"
                         for t in stored[2:]))


def text_emoji(ctx: Ctx) -> Got:
    return _round_trip(ctx, EMOJI)


def text_rtl(ctx: Ctx) -> Got:
    return _round_trip(ctx, RTL)


def text_control_chars(ctx: Ctx) -> Got:
    return _round_trip(ctx, CONTROL_CHARS)


def history_longer_than_context(ctx: Ctx) -> Got:
    from engine.store import ConversationStore

    conv = ctx.seed_store()
    store = ConversationStore(ctx.data / "conversations.sqlite3")
    for i in range(300):
        store.add_turn(conv, "user" if i % 2 == 0 else "assistant",
                       f"a fairly long turn number {i} about the weather", "tiny")
    store.close()
    result = ctx.cli("chat", "-p", ctx.tiny, "--continue", "-m", "and now?")
    stored = ctx.assert_kept(conv)
    if result.rc != 0:
        return result.error()
    chat = ctx.fixture("tiny_chat")
    from engine.chat.types import Turn

    history = [Turn(t.role, t.text) for t in stored[:-1]]  # type: ignore[arg-type]
    prompt = chat.build_prompt(history)
    assert len(prompt.ids) + chat.decoding.max_new_tokens <= chat.loaded.context_tokens
    return Got(f"{len(stored)} turns stored, the last by {stored[-1].role} ({stored[-1].status});"
               f" prompt: newest {prompt.turns_used} turns, {prompt.turns_dropped} dropped")


def store_damaged_process(ctx: Ctx) -> Got:
    """A conversation database that is not SQLite: refused clearly, and left as it was."""
    db = ctx.data / "conversations.sqlite3"
    db.parent.mkdir(parents=True, exist_ok=True)
    junk = b"this is not a database, but it may be someone's only copy\n" * 200
    db.write_bytes(junk)
    result = ctx.subprocess("chat", "-p", ctx.tiny, "-m", "hello")
    assert result.rc == 1
    assert db.read_bytes() == junk  # never overwritten or "repaired" away
    return result.error()


def store_newer_schema(ctx: Ctx) -> Got:
    import sqlite3

    conv = ctx.seed_store()
    db = sqlite3.connect(ctx.data / "conversations.sqlite3")
    db.execute("PRAGMA user_version=7")
    db.close()
    result = ctx.cli("chat", "-p", ctx.tiny, "--continue", "-m", "hello")
    assert result.rc == 1
    db = sqlite3.connect(ctx.data / "conversations.sqlite3")
    db.execute("PRAGMA user_version=1")
    db.close()
    ctx.assert_kept(conv)
    return result.error()


CASES = [
    Case("text-empty", "text", "a message of only whitespace",
         "Nothing to send: the message is empty", text_empty),
    Case("text-100kb", "text", "a 100 kB message", "this persona can take at most",
         text_100kb),
    Case("text-emoji", "text", "a message of only emoji", _stored_as(EMOJI), text_emoji),
    Case("text-rtl", "text", "Arabic and Hebrew text", _stored_as(RTL), text_rtl),
    Case("text-control-chars", "text", "NUL, BEL, BS, US in a message",
         _stored_as(CONTROL_CHARS), text_control_chars),
    Case("history-over-context", "text", "300 stored turns, far past the 128-token context",
         "304 turns stored, the last by assistant (done)", history_longer_than_context),
    Case("store-damaged-process", "store", "conversations.sqlite3 is not a database, CLI "
         "process", "Cannot open the conversation database", store_damaged_process),
    Case("store-newer-schema", "store", "a database from a newer app version",
         "written by a newer version", store_newer_schema),
]
