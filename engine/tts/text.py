"""Preparing text for speech: normalisation, and a streaming sentence/clause splitter.

The splitter takes the reply as it streams (token by token) and hands out speakable pieces as
soon as they are complete, so the first sentence is spoken while the rest is generated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

ABBREVIATIONS = {
    "dr": "Doctor", "mr": "Mister", "mrs": "Missus", "ms": "Miz", "st": "Saint",
    "prof": "Professor", "jr": "Junior", "sr": "Senior", "vs": "versus", "etc": "et cetera",
    "approx": "approximately",
    "e.g": "for example", "i.e": "that is",
}
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen " \
        "fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_SYMBOLS = {"&": " and ", "%": " percent", "+": " plus ", "=": " equals ", "@": " at ",
            "°": " degrees", "€": " euros", "£": " pounds"}
_URL = re.compile(r"\b(?:https?://|www\.)[^\s]+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
_MONEY = re.compile(r"\$(\d+)(?:\.(\d{2}))?\b")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![\w])")
# Emoji and other pictographs: not speakable.
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D]")


def number_words(n: int) -> str:
    """An integer in English words."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + (" " + number_words(rest) if rest else "")
    for value, name in _SCALES:
        if n >= value:
            rest = n % value
            return number_words(n // value) + " " + name + (" " + number_words(rest)
                                                            if rest else "")
    return str(n)


def _ordinal(n: int) -> str:
    words = number_words(n)
    irregular = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                 "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
    head, _, last = words.rpartition(" ")
    last_part = last.split("-")[-1]
    if last_part in irregular:
        last = last[: len(last) - len(last_part)] + irregular[last_part]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return (head + " " if head else "") + last


def _number(match: re.Match[str]) -> str:
    whole = int(match.group(1).replace(",", ""))
    words = number_words(whole)
    if match.group(2):
        words += " point " + " ".join(_ONES[int(d)] for d in match.group(2))
    return words


def _money(match: re.Match[str]) -> str:
    dollars, cents = int(match.group(1)), int(match.group(2) or 0)
    words = f"{number_words(dollars)} dollar{'s' if dollars != 1 else ''}"
    return words + (f" {number_words(cents)} cent{'s' if cents != 1 else ''}" if cents else "")


def _time(match: re.Match[str]) -> str:
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes == 0:
        return f"{number_words(hours)} o'clock"
    return f"{number_words(hours)} {'oh ' if minutes < 10 else ''}{number_words(minutes)}"


def normalise(text: str) -> str:
    """Text a TTS model can say: numbers, abbreviations, symbols, URLs and emoji handled."""
    text = _URL.sub(lambda m: " link ", text)
    text = _EMAIL.sub(lambda m: m.group(0).replace("@", " at ").replace(".", " dot "), text)
    text = _EMOJI.sub("", text)
    text = _MONEY.sub(_money, text)
    text = _TIME.sub(_time, text)
    text = _ORDINAL.sub(lambda m: _ordinal(int(m.group(1))), text)
    text = _NUMBER.sub(_number, text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)

    def abbreviation(match: re.Match[str]) -> str:
        word = match.group(1)
        return ABBREVIATIONS.get(word.lower(), match.group(0))

    text = re.sub(r"\b([A-Za-z]+(?:\.[A-Za-z])?)\.(?=\s|$)",
                  lambda m: abbreviation(m) if m.group(1).lower() in ABBREVIATIONS
                  else m.group(0), text)
    return re.sub(r"\s+", " ", text).strip()


_END = re.compile(r"([.!?…]+|\.\.\.)([\"'”’)\]]*)\s")
_CLAUSE = re.compile(r"[,;:—]\s")
_WORD = re.compile(r"\S+\s+")


class SentenceSplitter:
    """Collects streamed text; :meth:`feed` returns the pieces that became complete.

    A piece ends at sentence punctuation followed by a space (not after an abbreviation such as
    "Dr." or inside a number such as "3.14"); a long sentence is also cut at a clause boundary
    (comma, semicolon, colon, dash) once it exceeds ``max_chars``, so speech can start early.

    The first piece is what the person waits for, so it may be shorter still: cut at a clause
    after ``first_clause_chars``, or, with ``first_words``, between words once that many whole
    words have come with no punctuation yet (``benchmarks/first_piece.py`` measures both).
    """

    def __init__(self, max_chars: int = 120, first_clause_chars: int = 30,
                 first_words: int = 0):
        self.max_chars = max_chars
        self.first_clause_chars = first_clause_chars  # the first piece may be cut this early
        self.first_words = first_words  # 0: the first piece waits for punctuation
        self._buffer = ""
        self._emitted = 0

    def feed(self, text: str) -> list[str]:
        """Add streamed text; return the complete pieces, in order."""
        self._buffer += text
        pieces = []
        while (piece := self._next()) is not None:
            pieces.append(piece)
        return pieces

    def flush(self) -> list[str]:
        """The rest, at the end of the stream (text without final punctuation included)."""
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _next(self) -> str | None:
        for match in _END.finditer(self._buffer):
            before = self._buffer[: match.start()].rsplit(None, 1)
            word = before[-1].lower().lstrip("(\"'") if before else ""
            if match.group(1) == "." and word in ABBREVIATIONS:
                continue
            return self._cut(match.end())
        limit = self.first_clause_chars if self._emitted == 0 else self.max_chars
        if len(self._buffer) > limit:
            clauses = [m for m in _CLAUSE.finditer(self._buffer) if m.start() >= limit // 2]
            if clauses:
                return self._cut(clauses[0].end())
        if self._emitted == 0 and self.first_words:
            # A word is whole once white space follows it.
            whole = list(_WORD.finditer(self._buffer))
            if len(whole) >= self.first_words:
                return self._cut(whole[self.first_words - 1].end())
        if len(self._buffer) > 2 * self.max_chars:
            # Text with no punctuation at all (some models write it): cut between words
            # rather than keep the voice waiting for the end of the reply.
            space = self._buffer.rfind(" ", 0, self.max_chars)
            if space > 0:
                return self._cut(space + 1)
        return None

    def _cut(self, end: int) -> str | None:
        piece, self._buffer = self._buffer[:end].strip(), self._buffer[end:]
        if not piece:
            return self._next()
        self._emitted += 1
        return piece


def split_stream(tokens: Iterable[str], **options: int) -> Iterator[str]:
    """Speakable pieces from a token stream, each as soon as it is complete."""
    splitter = SentenceSplitter(**options)
    for token in tokens:
        yield from splitter.feed(token)
    yield from splitter.flush()
