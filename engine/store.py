"""Conversations on disk: SQLite in WAL mode, one commit per change.

A turn is committed before it is shown, and a streamed reply is updated (and committed) before
each new piece is shown, so a killed process loses nothing that was on screen. WAL keeps those
commits cheap (no fsync per commit with ``synchronous=NORMAL``, which is still durable against a
process crash; only a power cut can lose the last commits).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import StoreError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    persona TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    text TEXT NOT NULL,
    persona TEXT NOT NULL,
    created REAL NOT NULL,
    -- 'done'; 'streaming' while a reply is being written; 'cut' if it was interrupted
    status TEXT NOT NULL DEFAULT 'done',
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns(conversation_id, id);
"""


@dataclass(frozen=True)
class StoredTurn:
    """A turn as stored."""

    id: int
    conversation_id: int
    role: str
    text: str
    persona: str
    created: float  # Unix time, seconds
    status: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class Conversation:
    """A conversation's header."""

    id: int
    title: str
    persona: str
    created: float
    updated: float


class ConversationStore:
    """All conversations of this user. Safe to use from one thread at a time per instance."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The conversation database was written by a newer version (schema "
                    f"{version}).", hint="Update Talk To Transformers.", code="store_too_new")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # Replies that were streaming when a previous process died are cut, not lost.
            self._db.execute("UPDATE turns SET status='cut' WHERE status='streaming'")
        except sqlite3.DatabaseError as err:
            raise StoreError(f"Cannot open the conversation database {self.path.name}: {err}.",
                             hint="If the file is damaged, move it away; a new one is made.",
                             ) from err

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as err:
            raise StoreError(f"Could not save to the conversation database: {err}.",
                             hint="Is the disk full?", code="store_write_failed") from err

    # -- conversations ------------------------------------------------------------------------
    def new_conversation(self, persona: str, title: str = "") -> int:
        """Start a conversation; returns its id."""
        now = time.time()
        cur = self._write("INSERT INTO conversations(title, persona, created, updated) "
                          "VALUES (?, ?, ?, ?)", (title, persona, now, now))
        return int(cur.lastrowid or 0)

    def conversations(self) -> list[Conversation]:
        """All conversations, most recently updated first."""
        rows = self._db.execute("SELECT id, title, persona, created, updated FROM conversations "
                                "ORDER BY updated DESC, id DESC").fetchall()
        return [Conversation(*row) for row in rows]

    def latest_conversation(self) -> int | None:
        """Id of the most recently updated conversation, if any."""
        found = self.conversations()
        return found[0].id if found else None

    def search(self, text: str) -> list[Conversation]:
        """Conversations whose title or any turn contains ``text`` (case-insensitive)."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._db.execute(
            "SELECT id, title, persona, created, updated FROM conversations c "
            "WHERE title LIKE ?1 ESCAPE '\\' OR EXISTS (SELECT 1 FROM turns t WHERE "
            "t.conversation_id = c.id AND t.text LIKE ?1 ESCAPE '\\') "
            "ORDER BY updated DESC, id DESC", (pattern,)).fetchall()
        return [Conversation(*row) for row in rows]

    def rename(self, conversation_id: int, title: str) -> None:
        """Set a conversation's title."""
        self._write("UPDATE conversations SET title=? WHERE id=?", (title, conversation_id))

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation and its turns."""
        self._write("DELETE FROM conversations WHERE id=?", (conversation_id,))

    # -- turns --------------------------------------------------------------------------------
    def add_turn(self, conversation_id: int, role: str, text: str, persona: str, *,
                 status: str = "done", meta: dict[str, Any] | None = None) -> int:
        """Append a turn (committed on return); returns its id."""
        now = time.time()
        cur = self._write(
            "INSERT INTO turns(conversation_id, role, text, persona, created, status, meta) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (conversation_id, role, text, persona, now, status, json.dumps(meta or {})))
        self._write("UPDATE conversations SET updated=?, title=CASE WHEN title='' AND ?='user' "
                    "THEN substr(?, 1, 60) ELSE title END WHERE id=?",
                    (now, role, text, conversation_id))
        return int(cur.lastrowid or 0)

    def update_turn(self, turn_id: int, text: str, *, status: str | None = None,
                    meta: dict[str, Any] | None = None) -> None:
        """Replace a turn's text (a growing streamed reply) and optionally its status."""
        sets, args = ["text=?"], [text]
        if status is not None:
            sets.append("status=?")
            args.append(status)
        if meta is not None:
            sets.append("meta=?")
            args.append(json.dumps(meta))
        self._write(f"UPDATE turns SET {', '.join(sets)} WHERE id=?", (*args, turn_id))

    def update_turn_meta(self, turn_id: int, meta: dict[str, Any]) -> None:
        """Merge ``meta`` into a turn's stored metadata."""
        row = self._db.execute("SELECT meta FROM turns WHERE id=?", (turn_id,)).fetchone()
        merged = {**(json.loads(row[0]) if row else {}), **meta}
        self._write("UPDATE turns SET meta=? WHERE id=?", (json.dumps(merged), turn_id))

    def turns(self, conversation_id: int) -> list[StoredTurn]:
        """A conversation's turns, oldest first."""
        return list(self._iter_turns(conversation_id))

    def _iter_turns(self, conversation_id: int) -> Iterator[StoredTurn]:
        rows = self._db.execute(
            "SELECT id, conversation_id, role, text, persona, created, status, meta FROM turns "
            "WHERE conversation_id=? ORDER BY id", (conversation_id,))
        for turn_id, conversation, role, text, persona, created, status, meta in rows:
            yield StoredTurn(turn_id, conversation, role, text, persona, created, status,
                             json.loads(meta))
