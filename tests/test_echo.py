"""The echo guard, with fake generation attempts."""

from __future__ import annotations

import pytest

from engine.chat.echo import guarded_stream, is_echo
from engine.errors import EchoReplyError


class Attempts:
    """Fake generation: each call streams the next scripted reply, recording what happened."""

    def __init__(self, *replies: list[str]):
        self.replies = list(replies)
        self.calls = 0
        self.closed = 0

    def __call__(self):
        pieces = self.replies[self.calls]
        self.calls += 1
        try:
            yield from pieces
        finally:
            self.closed += 1


@pytest.mark.parametrize(("reply", "user", "echo"), [
    ("I like cats.", "i like cats", True),
    ("I like", "I like cats and dogs", False),  # too little of the turn to be an echo
    ("I like cats and", "I like cats and dogs", True),
    ("Cats are great", "I like cats", False),
    ("", "I like cats", False),
])
def test_is_echo(reply, user, echo):
    assert is_echo(reply, user) is echo


def test_non_echo_streams_through_as_soon_as_it_diverges():
    attempts = Attempts(["Why", " do", " you", " ask?"])
    stream = guarded_stream(attempts, "What is up?")
    assert next(stream) == "Why"  # diverged from "what is up" at once: not held back
    assert list(stream) == [" do", " you", " ask?"]
    assert attempts.calls == 1


def test_echo_is_dropped_and_regenerated_once():
    attempts = Attempts(["I", " love", " jazz"], ["Me", " too"])
    assert "".join(guarded_stream(attempts, "I love jazz!")) == "Me too"
    assert attempts.calls == 2


def test_reply_that_starts_like_the_user_but_goes_on_is_kept():
    attempts = Attempts(["I", " love", " jazz", " too, it is great"])
    assert "".join(guarded_stream(attempts, "I love jazz")) == "I love jazz too, it is great"
    assert attempts.calls == 1


def test_two_echoes_raise_a_clear_error():
    attempts = Attempts(["hello"], ["Hello!"])
    with pytest.raises(EchoReplyError) as caught:
        list(guarded_stream(attempts, "hello"))
    assert "repeated your words" in caught.value.message
    assert attempts.calls == 2


def test_closing_the_stream_closes_the_attempt():
    attempts = Attempts(["No", " way", " at", " all"])
    stream = guarded_stream(attempts, "yes")
    next(stream)
    stream.close()
    assert attempts.closed == 1
