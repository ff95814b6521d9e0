"""The echo guard: DialoGPT's known failure is replying with the user's own words.

A streamed reply is held back only while it could still turn out to be an echo (its text so far
is a prefix of the user's turn); as soon as it diverges it flows through. A reply that ends as an
echo is dropped and regenerated once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from engine.errors import EchoReplyError

# A reply covering at least this share of the user's turn, from its start, is an echo.
ECHO_MIN_COVERAGE = 0.6
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces; punctuation and spacing ignored."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def is_echo(reply: str, user_text: str) -> bool:
    """Whether ``reply`` merely repeats (the start of) ``user_text``."""
    r, u = normalise(reply), normalise(user_text)
    if not r or not u:
        return False
    return u.startswith(r) and len(r) >= ECHO_MIN_COVERAGE * len(u)


def could_become_echo(partial: str, user_text: str) -> bool:
    """Whether a reply that starts with ``partial`` may still end as an echo."""
    r, u = normalise(partial), normalise(user_text)
    return bool(u) and u.startswith(r)


def guarded_stream(attempt: Callable[[], Iterator[str]], user_text: str) -> Iterator[str]:
    """Stream ``attempt()``, regenerating once if the reply is an echo of ``user_text``.

    Raises:
        EchoReplyError: both attempts only echoed the user.

    """
    for _ in range(2):
        held: list[str] = []
        passing = False
        pieces = attempt()
        try:
            for piece in pieces:
                if passing:
                    yield piece
                    continue
                held.append(piece)
                if not could_become_echo("".join(held), user_text):
                    passing = True
                    yield "".join(held)
        finally:
            # Closing the generator is what stops generation when our caller stops early.
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        if passing:
            return
        text = "".join(held)
        if not is_echo(text, user_text):
            if text:
                yield text
            return
    raise EchoReplyError(
        "The persona only repeated your words back, twice.",
        hint="Try rephrasing, or raise the persona's repetition_penalty.",
    )
