"""Crash safety: kill -9 the CLI mid-conversation, mid-voice-save and mid-pull (a few times each).

The full run with 50+ kills and its figures is ``python scripts/crash_test.py``; this runs the
same harness with a handful of kills so every test run covers it. Training killed mid-run is in
tests/test_train.py.
"""

from __future__ import annotations

import random
import shutil

import pytest

from scripts.crash_test import (
    ChatCounts,
    Run,
    _check_run,
    chat_kills,
    pull_kills,
    shown_turns,
    voice_save_kills,
)


def test_shown_turns_are_parsed_as_the_terminal_showed_them():
    out = ("Loading X...\nReady in 1.0 s on cpu.\nyou> hi there\nbot> hello you\n"
           "you> more\nbot> half a rep")
    assert shown_turns(out) == [("user", "hi there"), ("assistant", "hello you"),
                                ("user", "more"), ("assistant", "half a rep")]


class _Rows:
    """Stands in for the store's connection in ``_check_run``."""

    def __init__(self, rows):
        self._db = self
        self.rows = rows

    def execute(self, *_args):
        return self

    def fetchall(self):
        return self.rows


def test_the_checker_catches_a_lost_turn():
    """A shown reply longer than the stored one, or a missing user turn, is a mismatch."""
    run = Run("you> hi\nbot> hello there\nyou> second\nbot> ", "", True, -9, 0.1)
    counts = ChatCounts()
    _check_run(run, _Rows([("user", "hi", "done"), ("assistant", "hello", "cut")]), 0, counts,
               "fake")
    assert counts.turns_shown == 3 and counts.turns_recovered == 1
    assert counts.mismatches == 2 and len(counts.problems) == 2
    kept = ChatCounts()
    _check_run(run, _Rows([("user", "hi", "done"), ("assistant", "hello there more", "cut"),
                           ("user", "second", "done")]), 0, kept, "fake")
    assert kept.mismatches == 0 and not kept.problems


@pytest.mark.slow
def test_chat_killed_loses_nothing_shown(tmp_path):
    counts = chat_kills(8, random.Random(1), tmp_path, log=lambda *_: None)
    assert counts.problems == []
    assert counts.kills == 8 and counts.opened_cleanly == 8
    assert counts.turns_shown > 0 and counts.mismatches == 0
    assert counts.cut_on_open == counts.streaming_left


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="needs espeak-ng and sox (installed by the set-up) for a real WAV")
def test_voice_save_killed_leaves_nothing_half_written(tmp_path):
    counts = voice_save_kills(2, random.Random(2), tmp_path, log=lambda *_: None)
    assert counts.problems == []
    assert counts.half_written_listed == 0 and counts.reruns_ok == counts.runs == 2


@pytest.mark.slow
def test_pull_killed_leaves_nothing_half_written(tmp_path):
    counts = pull_kills(2, random.Random(3), tmp_path, log=lambda *_: None)
    assert counts.problems == []
    assert counts.half_written_listed == 0 and counts.reruns_ok == counts.runs == 2
