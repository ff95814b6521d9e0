"""What a matrix case is, and the helpers cases share (CLI runs, a seeded conversation store).

A case runs one bad input through the path a person uses and returns what that person was told
(:class:`Got`). The test asserts that ``expected`` (an error code or a piece of the message) is
in it and that no traceback was shown; a case checks for itself that nothing saved was lost.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.errors import TalkError

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Got:
    """What the person was told: an error code (where the engine has one) and the message."""

    text: str
    code: str | None = None

    @classmethod
    def of(cls, err: TalkError) -> Got:
        """From a caught engine error."""
        return cls(str(err), err.code)

    def shown(self) -> str:
        """One string to match and to print: ``[code] message``."""
        return f"[{self.code}] {self.text}" if self.code else self.text


@dataclass(frozen=True)
class Case:
    """One row of the matrix."""

    id: str
    area: str  # audio, text, persona, voice, settings, reddit, remote, device, disk, gui...
    given: str  # the bad input, in words
    expected: str  # an error code or a piece of the message the person must see
    run: Callable[[Ctx], Got]
    xfail: str | None = None  # names the bug while it is open (strict: it must still fail)
    marks: tuple[Any, ...] = field(default_factory=tuple)

    def param(self) -> Any:
        """The case as a pytest parameter (xfail cases strictly marked)."""
        marks = list(self.marks)
        if self.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=self.xfail))
        return pytest.param(self, id=self.id, marks=marks)


@dataclass
class CliResult:
    """Exit status and output of one CLI run."""

    rc: int
    out: str
    err: str

    def error(self) -> Got:
        """The ``error:`` line (and its hint) the CLI printed; fails on a traceback."""
        assert "Traceback" not in self.err + self.out, self.err[-2000:]
        lines = self.err.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("error"):
                hint = lines[i + 1].strip() if i + 1 < len(lines) and \
                    lines[i + 1].startswith("  ") else ""
                return Got(line.removeprefix("error: ") + (f"\n{hint}" if hint else ""))
        return Got(f"(exit {self.rc}, no error line) {self.err.strip()[-300:]}")


class Ctx:
    """What a case may use: a private data folder, tmp files, fixtures on demand."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, data_dir: Path,
                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.request, self.tmp, self.data = request, tmp_path, data_dir
        self.monkeypatch, self.capsys = monkeypatch, capsys

    def fixture(self, name: str) -> Any:
        """A pytest fixture, set up only for the cases that need it (qtbot, tiny_chat...)."""
        return self.request.getfixturevalue(name)

    @property
    def tiny(self) -> Path:
        """The tiny DialoGPT persona folder."""
        return self.fixture("tiny_persona_dir")

    def cli(self, *argv: str) -> CliResult:
        """``talk-to-transformers ARGV`` in this process (the installed launcher's ``main``)."""
        from app.cli import main

        self.capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = self.capsys.readouterr()
        return CliResult(rc, out, err)

    def subprocess(self, *argv: str, env: dict[str, str] | None = None,
                   timeout: float = 90) -> CliResult:
        """``python -m app.cli ARGV`` as a real process, with this case's data folder."""
        full_env = {**os.environ, "TTT_DATA_DIR": str(self.data), **(env or {})}
        done = subprocess.run([sys.executable, "-c", "import sys; from app.cli import main; "
                               "sys.exit(main())", *map(str, argv)], cwd=ROOT, env=full_env,
                              capture_output=True, text=True, timeout=timeout)
        return CliResult(done.returncode, done.stdout, done.stderr)

    # -- a conversation saved before the bad input arrives -----------------------------------
    def seed_store(self, turns: int = 2) -> int:
        """Store a conversation of ``turns`` turns; returns its id."""
        from engine.store import ConversationStore

        store = ConversationStore(self.data / "conversations.sqlite3")
        conv = store.new_conversation("tiny")
        for i in range(turns):
            store.add_turn(conv, "user" if i % 2 == 0 else "assistant", f"earlier turn {i}",
                           "tiny")
        store.close()
        return conv

    def assert_kept(self, conversation: int, turns: int = 2) -> list[Any]:
        """The store still opens and still holds the seeded turns; returns all its turns."""
        from engine.store import ConversationStore

        store = ConversationStore(self.data / "conversations.sqlite3")
        try:
            stored = store.turns(conversation)
        finally:
            store.close()
        assert [t.text for t in stored[:turns]] == [f"earlier turn {i}" for i in range(turns)]
        return stored


def expect_error(fn: Callable[[], Any]) -> Got:
    """Run ``fn``; it must raise a TalkError, which becomes the Got."""
    try:
        fn()
    except TalkError as err:
        return Got.of(err)
    raise AssertionError("no error was raised")
