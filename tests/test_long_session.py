"""A long session: 500 typed turns in one conversation through the real ChatSession.

The tiny persona has a 128-token context and keeps 12 tokens for the reply, so after a few turns
every prompt is cut by the history budget, and the long messages leave room for nothing but
themselves. Checked on every turn: the prompt the model is given is the newest whole turns, as
many as fit, and always ends with the user's message. Checked across the session: nothing that
should stay the same size grows (tensors, threads, the Python heap beyond the conversation's own
text), and all 1000 messages are stored and come back when the conversation is reopened.
A second, shorter session runs a chat-template persona whose template (like Mistral's) rejects
a conversation that does not open with a user turn, as a window cut from a long one may.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

from engine.chat.local import LocalChat
from engine.chat.types import Turn
from engine.conversation import ChatSession
from engine.models.persona import load_persona
from engine.store import ConversationStore

TURNS = 500
CHECK_EVERY = 50  # turns between memory checkpoints
TRACE_FROM = 250  # the Python heap is traced from this turn to the last
# The conversation itself is allowed to grow (its Turn objects and reply texts are measured and
# allowed for). On top of that, tracemalloc also counts memory that stays allocated once: the
# interpreter's free lists (tuples, dicts, floats kept for reuse), caches filled on first use,
# SQLite statement objects. That came to ~55 KiB over turns 250-500 when this test was written,
# and did not grow further over 2000 turns. 256 KiB allows for it with room to spare, yet
# anything kept per turn of 1 KiB or more (a generation thread, a streamer and its queue, a
# prompt's id list, a KV cache's Python objects) adds 250 KiB or more over 250 turns and fails:
# keeping each prompt's id list made it 527 KiB.
HEAP_SLACK_BYTES = 256 * 1024
# Tensors are counted, not traced: torch allocates their storage outside Python's allocator.
# Between turns the only live tensors are the model's weights. A few more may appear once (a
# lazily built buffer); a KV cache kept per turn adds 4 tensors a turn, 200 per checkpoint.
TENSOR_SLACK = 8

# Like Mistral's and Gemma's templates: roles must alternate, starting with the user.
STRICT_TEMPLATE = (
    "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/...') }}"
    "{% endif %}{{ m['content'] + eos_token }}{% endfor %}"
)
WORDS = ("hello there how are you today i am fine thanks and what is the weather like in "
         "berkeley it sunny warm near campus do like music or movies more quick brown fox "
         "jumps over lazy dog").split()
# Outside the tokenizer's 300-token vocabulary: these cost one token per byte or so.
ODD_WORDS = ["Zürich", "naïve", "3.14159", "¿qué?", "👍", "C++", "e-mail", "Berkeley's", "OK!!",
             "ΑΒΓ", "日本語", "(parens)", "#42", "x=y+1"]


def user_messages(n: int, tokenizer, limit: int) -> list[str]:
    """``n`` varied messages: one-word, everyday, odd characters, and long ones near ``limit``.

    ``limit`` is the most tokens a message may take (its end-of-turn token included).
    """
    rng = random.Random(500)

    def cost(text: str) -> int:
        return len(tokenizer.encode(text.strip(), add_special_tokens=False)) + 1

    messages = []
    for i in range(n):
        if i % 9 == 4:  # long: words added until just under the whole prompt budget
            words: list[str] = []
            while True:
                word = rng.choice(WORDS) if rng.random() < 0.85 else rng.choice(ODD_WORDS)
                if cost(" ".join([*words, word])) > limit:
                    break
                words.append(word)
            text = " ".join(words)
        elif i % 5 == 0:
            text = rng.choice(["hi", "ok", "why?", "👍", "hello", "yes", "tell me more"])
        else:
            pool = WORDS + ODD_WORDS if i % 3 == 0 else WORDS
            text = " ".join(rng.choice(pool) for _ in range(rng.randint(3, 20)))
        if i % 7 == 3:
            text = f"  {text}\n"  # typed with stray whitespace; the session strips it
        assert cost(text) <= limit, text
        messages.append(text)
    return messages


class PromptSpy:
    """Stands in for the chat's generation: records the token ids the model is given."""

    def __init__(self, chat):
        self.generate = chat._generate  # what stream_reply calls (with the KV cache reuse)
        self.calls: list[list[int]] = []
        chat._generate = self

    def __call__(self, prompt_ids, cancel, decoding=None, **options):
        self.calls.append(list(prompt_ids))
        return self.generate(prompt_ids, cancel, decoding, **options)


def live_tensors() -> tuple[int, int]:
    """Number and bytes of the torch tensors alive now (after a collection)."""
    import torch

    gc.collect()
    found = [o for o in gc.get_objects() if issubclass(type(o), torch.Tensor)]
    return len(found), sum(t.numel() * t.element_size() for t in found)


def turn_bytes(turns) -> int:
    """Python heap held by these Turn objects and their texts."""
    return sum(sys.getsizeof(t) + sys.getsizeof(t.__dict__) + sys.getsizeof(t.text)
               for t in turns)


@pytest.fixture
def one_torch_thread():
    """One torch thread: the tiny model's matrices gain nothing from more.

    On a busy two-core machine the spinning threads made the 500 turns three to four times slower.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def chat(tiny_persona_dir: Path, one_torch_thread):
    """The tiny persona, loaded for this test alone (its ``generate`` gets spied on)."""
    return LocalChat.load(load_persona(tiny_persona_dir), device="cpu")


@pytest.fixture
def no_tracing_left():
    """Stop tracemalloc even when the test fails while tracing (it slows every later test)."""
    yield
    tracemalloc.stop()


@pytest.mark.slow  # ~40 s: 500 replies of the tiny model on one CPU thread
def test_500_turns_stay_within_context_and_memory(chat, data_dir: Path, no_tracing_left):
    tokenizer, eos = chat.loaded.tokenizer, chat.loaded.tokenizer.eos_token_id
    limit = chat.loaded.context_tokens - chat.decoding.max_new_tokens
    assert limit < 128  # a small context, so the budget is hard at work

    def cost(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False) + [eos]

    messages = user_messages(TURNS, tokenizer, limit)
    spy = PromptSpy(chat)
    store = ConversationStore(data_dir / "long.sqlite3")
    session = ChatSession(store, chat, chat.persona.id)
    # Preallocated and filled with small ints, so the bookkeeping allocates nothing while traced.
    turns_in_prompt = [0] * TURNS
    tensors: list[tuple[int, int, int]] = []  # (turn, count, bytes) at each checkpoint
    threads_before = threading.active_count()
    heap_retained = history_growth = 0
    snapshot = None

    for turn, message in enumerate(messages, start=1):
        before = len(session.history)
        reply = "".join(session.send(message))
        assert reply.strip(), f"turn {turn}: empty reply"
        assert len(session.history) == before + 2
        history = session.history[:before + 1]  # what the prompt was built from
        assert history[-1].text == message.strip()

        assert spy.calls, f"turn {turn}: the model was not called"
        for ids in spy.calls:  # two calls when the echo guard regenerated
            assert len(ids) <= limit, f"turn {turn}: {len(ids)}-token prompt, limit {limit}"
            newest = cost(message.strip())
            assert ids[-len(newest):] == newest, f"turn {turn}: the user's message is cut"
            # The newest whole turns, as many as fit: rebuild it from the history's end.
            used, size = 0, 0
            while used < len(history) and size + len(cost(history[-1 - used].text)) <= limit:
                size += len(cost(history[-1 - used].text))
                used += 1
            expected = [tok for t in history[len(history) - used:] for tok in cost(t.text)]
            assert ids == expected, f"turn {turn}: not the newest whole turns that fit"
            turns_in_prompt[turn - 1] = used
        spy.calls.clear()

        if turn % CHECK_EVERY == 0:
            count, size = live_tensors()
            tensors.append((turn, count, size))
            assert threading.active_count() == threads_before, f"turn {turn}: threads left"
        if turn == TRACE_FROM:
            gc.collect()
            tracemalloc.start()
        if turn == TURNS:
            gc.collect()
            heap_retained = tracemalloc.get_traced_memory()[0]
            snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
            history_growth = turn_bytes(session.history[2 * TRACE_FROM:])

    # The budget was exercised both ways: long messages alone, short ones with many before them.
    assert min(turns_in_prompt) == 1
    assert max(turns_in_prompt) >= 8
    cut = sum(used < 2 * turn - 1 for turn, used in enumerate(turns_in_prompt, start=1))
    assert cut > TURNS - 10  # older turns were left out of nearly every prompt

    # Memory that must stay bounded did.
    _, base_count, base_bytes = tensors[0]
    grew = [(t, c, b) for t, c, b in tensors
            if c > base_count + TENSOR_SLACK or b > base_bytes + 256 * 1024]
    assert not grew, (f"live tensors grew from {base_count} ({base_bytes} B) at turn "
                      f"{CHECK_EVERY}: {grew}")
    assert heap_retained - history_growth <= HEAP_SLACK_BYTES, (
        f"turns {TRACE_FROM}-{TURNS} kept {heap_retained} B of Python heap, the conversation "
        f"itself {history_growth} B; top allocation sites:\n"
        + "\n".join(str(s) for s in snapshot.statistics("lineno")[:8]))

    # All 1000 messages are stored, in order, complete, and come back on reopening.
    conversation = session.conversation_id
    stored = store.turns(conversation)
    assert len(stored) == 2 * TURNS
    assert [t.role for t in stored] == ["user", "assistant"] * TURNS
    assert [t.text for t in stored[::2]] == [m.strip() for m in messages]
    assert {t.status for t in stored} == {"done"}
    assert [t.text for t in stored] == [t.text for t in session.history]
    store.close()

    reopened_store = ConversationStore(data_dir / "long.sqlite3")
    try:
        reopened = ChatSession(reopened_store, chat, chat.persona.id, conversation)
        assert reopened.history == session.history
        assert len(chat.build_prompt(reopened.history[:-1]).ids) <= limit
    finally:
        reopened_store.close()


def test_long_session_with_a_strict_chat_template(tiny_persona_dir: Path, data_dir: Path,
                                                  one_torch_thread):
    """Once turns are dropped, each prompt must still open with a user turn, or it fails."""
    persona = dataclasses.replace(load_persona(tiny_persona_dir), prompt_format="chat_template")
    chat = LocalChat.load(persona, device="cpu")
    chat.loaded.tokenizer.chat_template = STRICT_TEMPLATE
    limit = chat.loaded.context_tokens - chat.decoding.max_new_tokens
    spy = PromptSpy(chat)
    store = ConversationStore(data_dir / "strict.sqlite3")
    session = ChatSession(store, chat, persona.id)
    dropped = 0
    for turn, message in enumerate(user_messages(60, chat.loaded.tokenizer, limit - 4), 1):
        reply = "".join(session.send(message))  # a TemplateError here is the failure
        assert reply.strip(), f"turn {turn}: empty reply"
        assert spy.calls, f"turn {turn}: the model was never called"
        assert all(len(ids) <= limit for ids in spy.calls), f"turn {turn}: prompt too long"
        spy.calls.clear()
        history = [*session.history, Turn("user", "and then?")]
        prompt = chat.build_prompt(history)
        assert history[prompt.turns_dropped].role == "user"
        dropped += prompt.turns_dropped > 0
    store.close()
    assert dropped > 50  # the budget was at work on nearly every turn
