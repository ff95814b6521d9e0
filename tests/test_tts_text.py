"""Text normalisation and the streaming sentence splitter."""

from __future__ import annotations

import pytest

from engine.tts.text import SentenceSplitter, normalise, number_words, split_stream


@pytest.mark.parametrize(("text", "spoken"), [
    ("I have 3 cats.", "I have three cats."),
    ("It costs $3.50.", "It costs three dollars fifty cents."),
    ("Pi is 3.14", "Pi is three point one four"),
    ("1,234,567 people", "one million two hundred thirty-four thousand five hundred "
                         "sixty-seven people"),
    ("Meet at 10:30 or 7:00", "Meet at ten thirty or seven o'clock"),
    ("the 21st and 2nd", "the twenty-first and second"),
    ("Dr. Smith vs. Mr. Jones", "Doctor Smith versus Mister Jones"),
    ("Cats & dogs: 50% off", "Cats and dogs: fifty percent off"),
    ("see https://example.com/a?b=c now", "see link now"),
    ("Great 😀👍 job", "Great job"),
    ("Mail bob@example.org", "Mail bob at example dot org"),
    ("I said no.", "I said no."),
])
def test_normalise(text, spoken):
    assert normalise(text) == spoken


def test_number_words():
    assert number_words(0) == "zero"
    assert number_words(115) == "one hundred fifteen"
    assert number_words(2_000_001) == "two million one"
    assert number_words(-40) == "minus forty"


def tokens(text: str, size: int = 3) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def test_sentences_come_out_as_soon_as_they_end():
    splitter = SentenceSplitter()
    out = []
    for token in tokens("Hello there! How are you? I am fine. "):
        out.append(splitter.feed(token))
    pieces = [p for batch in out for p in batch]
    assert pieces == ["Hello there!", "How are you?", "I am fine."]
    # The first sentence was available before the stream ended.
    first = next(i for i, batch in enumerate(out) if batch)
    assert first < len(out) - 3


@pytest.mark.parametrize(("text", "pieces"), [
    ("Dr. Smith is here. He is late.", ["Dr. Smith is here.", "He is late."]),
    ("It is 3.14 meters. Yes.", ["It is 3.14 meters.", "Yes."]),
    ("Wait... What? Fine.", ["Wait...", "What?", "Fine."]),
    ('He said "go away." Then left.', ['He said "go away."', "Then left."]),
    ("no punctuation at all here", ["no punctuation at all here"]),
    ("", []),
])
def test_splitter_cases(text, pieces):
    assert list(split_stream(tokens(text))) == pieces


def test_long_first_sentence_is_cut_at_a_clause():
    text = ("Well, to be honest with you, I have been thinking about this for a long time, "
            "and I believe the answer is yes.")
    pieces = list(split_stream(tokens(text)))
    assert len(pieces) > 1
    assert pieces[0].endswith(",") and len(pieces[0]) < 60
    assert " ".join(pieces) == text


def test_unpunctuated_stream_is_cut_between_words():
    text = " ".join(["word"] * 100)
    pieces = list(split_stream(tokens(text)))
    assert len(pieces) > 2
    assert all(len(p) <= 120 for p in pieces[:-1])
    assert " ".join(pieces) == text


def test_the_first_piece_can_start_after_a_few_whole_words():
    text = "Well I think that is a lovely idea and we should do it. Yes indeed."
    splitter = SentenceSplitter(first_words=5)
    fed, first = "", None
    for token in tokens(text):
        fed += token
        out = splitter.feed(token)
        if out and first is None:
            first = (out[0], fed)
    assert first is not None
    assert first[0] == "Well I think that is"
    assert first[1].startswith("Well I think that is ")  # cut once the 5th word was whole
    pieces = list(split_stream(tokens(text), first_words=5))
    assert pieces == ["Well I think that is", "a lovely idea and we should do it.", "Yes indeed."]


def test_punctuation_before_the_word_count_still_ends_the_first_piece():
    assert list(split_stream(tokens("Hi! How are you doing today my friend?"),
                             first_words=5)) == ["Hi!", "How are you doing today my friend?"]


def test_first_words_counts_words_not_spaces():
    assert list(split_stream(tokens("Well  I\nthink that is a good idea indeed"), first_words=5)
                )[0] == "Well  I\nthink that is"
