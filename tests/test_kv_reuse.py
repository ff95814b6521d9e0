"""Reusing the KV cache between turns: the same replies, fewer tokens prefilled, safe fallbacks.

Every check compares against the same model with reuse turned off (greedy decoding, so one
prompt gives one reply), and counts the tokens the model's first forward pass of a reply is fed
(the prefill), which is what reuse saves.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from engine.chat.local import LocalChat
from engine.chat.types import CancelToken, Turn

USER_LINES = ["hello there how are you", "what is the weather like in berkeley",
              "do you like music or movies more", "i am fine thanks and you"]


class PrefillCounter:
    """Records how many tokens each forward call of ``model`` is fed."""

    def __init__(self, model) -> None:
        self.calls: list[int] = []
        self.handle = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls.append(int(ids.shape[1]))

    def prefill_of(self, reply) -> int:
        """Run ``reply()`` and return the size of its first forward call."""
        start = len(self.calls)
        reply()
        return self.calls[start]


@pytest.fixture
def counter(tiny_chat) -> Iterator[PrefillCounter]:
    """A prefill counter on the tiny model (shared by the session: the hook is removed after)."""
    counting = PrefillCounter(tiny_chat.loaded.model)
    yield counting
    counting.handle.remove()


def fresh(chat: LocalChat, *, reuse: bool = True, **overrides) -> LocalChat:
    """A new LocalChat (empty cache) over ``chat``'s already loaded model."""
    new = LocalChat(chat.persona, chat.loaded, chat.decoding.replace(**overrides))
    if not reuse:  # on by default: the tests of reuse rely on the default
        new.reuse_kv_cache = False
    return new


def converse(chat: LocalChat, lines: list[str], history: list[Turn] | None = None,
             counter: PrefillCounter | None = None) -> tuple[list[str], list[int]]:
    """Reply to each line in turn, growing the history; the replies and prefill sizes."""
    history = history if history is not None else []
    replies, prefills = [], []
    for line in lines:
        history.append(Turn("user", line))
        if counter is not None:
            prefills.append(counter.prefill_of(lambda: replies.append(chat.reply(history))))
        else:
            replies.append(chat.reply(history))
        history.append(Turn("assistant", replies[-1]))
    return replies, prefills


def test_tiny_replies_are_identical_and_only_new_tokens_are_prefilled(tiny_chat, counter):
    reusing, plain = fresh(tiny_chat), fresh(tiny_chat, reuse=False)
    expected, full_prefills = converse(plain, USER_LINES[:3], counter=counter)
    replies, prefills = converse(reusing, USER_LINES[:3], counter=counter)
    assert replies == expected
    history: list[Turn] = []
    for line, reply in zip(USER_LINES[:3], expected, strict=True):
        history.append(Turn("user", line))
        assert plain.build_prompt(history).turns_dropped == 0  # growth by appending only
        history.append(Turn("assistant", reply))
    assert prefills[0] == full_prefills[0]  # nothing cached yet
    for turn in (1, 2):
        # At least the whole previous prompt comes from the cache; of the reply, the tokens up
        # to where its text, tokenized again, differs from the generated tokens.
        assert prefills[turn] <= full_prefills[turn] - full_prefills[turn - 1], (
            prefills, full_prefills)
    assert reusing.kv_reused_tokens == full_prefills[2] - prefills[2]
    assert plain.kv_reused_tokens == 0


def test_switched_conversation_is_prefilled_in_full(tiny_chat, counter):
    chat = fresh(tiny_chat)
    converse(chat, USER_LINES[:2])
    other = [Turn("user", "the quick brown fox jumps over the lazy dog")]
    prompt_len = len(chat.build_prompt(other).ids)
    prefill = counter.prefill_of(lambda: chat.reply(other))
    assert prefill == prompt_len and chat.kv_reused_tokens == 0
    assert chat.reply(other) == fresh(tiny_chat, reuse=False).reply(other)


def test_edited_history_reuses_only_the_unchanged_start(tiny_chat, counter):
    chat, plain = fresh(tiny_chat), fresh(tiny_chat, reuse=False)
    history: list[Turn] = []
    converse(chat, USER_LINES[:2], history)
    # The user edits their second message: only the tokens before the edit may be reused.
    edited = history[:2] + [Turn("user", "what is the weather like near the campus")]
    prompt = chat.build_prompt(edited).ids
    prefill = counter.prefill_of(lambda: chat.reply(edited))
    assert 0 < chat.kv_reused_tokens < len(prompt) - 5
    assert prefill == len(prompt) - chat.kv_reused_tokens
    assert chat.reply(edited) == plain.reply(edited)


def test_truncated_history_falls_back_and_replies_the_same(tiny_chat, counter):
    chat, plain = fresh(tiny_chat), fresh(tiny_chat, reuse=False)
    history: list[Turn] = []
    lines = USER_LINES * 3
    for line in lines:
        history.append(Turn("user", line))
        prompt = chat.build_prompt(history)
        prefill = counter.prefill_of(lambda h=history: h.append(Turn("assistant", chat.reply(h))))
        assert history[-1].text == plain.reply(history[:-1])
        if prompt.turns_dropped:
            break
    else:
        pytest.fail("the history never outgrew the tiny model's 128-token context")
    # The oldest turns were dropped, so the prompt no longer starts like the cached one.
    assert chat.kv_reused_tokens == 0 and prefill == len(prompt.ids)


def test_after_a_cancel_the_partial_reply_is_cropped_away(tiny_chat, counter):
    chat = fresh(tiny_chat, max_new_tokens=40)
    plain = fresh(tiny_chat, reuse=False, max_new_tokens=40)
    history = [Turn("user", USER_LINES[0])]
    cancel = CancelToken()
    pieces = []
    for piece in chat.stream_reply(history, cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.cancel()
    assert 3 <= len(pieces) < 40
    # Asked again (regenerate): the cache holds the prompt and a partial reply; the reply is
    # the full one, and all of the prompt but its last token came from the cache.
    prompt = chat.build_prompt(history).ids
    again = []
    prefill = counter.prefill_of(lambda: again.append(chat.reply(history)))
    assert again[0] == plain.reply(history)
    assert prefill == 1 and chat.kv_reused_tokens == len(prompt) - 1
    # Cancelled once more, then the conversation goes on with the partial reply's text kept.
    cancel = CancelToken()
    for n, _ in enumerate(chat.stream_reply(history, cancel=cancel)):
        if n == 1:
            cancel.cancel()
    history += [Turn("assistant", "".join(pieces).strip()), Turn("user", USER_LINES[1])]
    assert chat.reply(history) == plain.reply(history)
    assert chat.kv_reused_tokens > 0


def test_an_error_mid_generation_drops_the_cache(tiny_chat, counter):
    from engine.errors import ChatError

    chat, plain = fresh(tiny_chat), fresh(tiny_chat, reuse=False)
    history: list[Turn] = []
    converse(chat, USER_LINES[:1], history)
    calls = {"n": 0}

    def fail_on_third_step(module, args, kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory (simulated)")

    handle = tiny_chat.loaded.model.register_forward_pre_hook(fail_on_third_step,
                                                              with_kwargs=True)
    history.append(Turn("user", USER_LINES[1]))
    try:
        with pytest.raises(ChatError):
            chat.reply(history)
    finally:
        handle.remove()
    prefill = counter.prefill_of(lambda: history.append(Turn("assistant", chat.reply(history))))
    assert chat.kv_reused_tokens == 0 and prefill == len(chat.build_prompt(history[:-1]).ids)
    assert history[-1].text == plain.reply(history[:-1])


def test_serve_generation_and_a_concurrent_stream_leave_the_conversation_correct(tiny_chat):
    chat, plain = fresh(tiny_chat), fresh(tiny_chat, reuse=False)
    history: list[Turn] = []
    converse(chat, USER_LINES[:1], history)
    # serve's raw generate() on another prompt neither uses nor replaces the conversation's.
    other = chat.build_prompt([Turn("user", "the quick brown fox")]).ids
    assert "".join(chat.generate(other, CancelToken()))
    # A second stream starts while the first is still generating: it must not share the cache.
    history.append(Turn("user", USER_LINES[1]))
    first = chat.stream_reply(history)
    head = next(first)
    assert chat.reply(history) == plain.reply(history)
    assert (head + "".join(first)).strip() == plain.reply(history)


def test_sampling_replies_still_stream(tiny_chat):
    chat = fresh(tiny_chat, do_sample=True, temperature=1.5, top_k=5, top_p=0.9)
    replies, _ = converse(chat, USER_LINES[:3])
    assert all(replies) and chat.kv_reused_tokens > 0


def test_caches_that_cannot_be_rewound_are_not_reused():
    from transformers import GPT2Config, MistralConfig

    from engine.chat.local import _empty_cache

    gpt2 = SimpleNamespace(config=GPT2Config(n_layer=2, n_embd=16, n_head=2))
    assert _empty_cache(gpt2) is not None
    # Sliding-window layers forget old tokens, so cropping them back is not exact.
    mistral = SimpleNamespace(config=MistralConfig(
        num_hidden_layers=2, hidden_size=16, intermediate_size=32, num_attention_heads=2,
        num_key_value_heads=1, sliding_window=64))
    assert _empty_cache(mistral) is None


@pytest.mark.slow
def test_starter_replies_are_identical_with_reuse(starter_chat):
    # Replies cut at 40 tokens keep the test short; the next prompt carries the cut text.
    reusing = fresh(starter_chat, max_new_tokens=40)
    plain = fresh(starter_chat, reuse=False, max_new_tokens=40)
    lines = ["Hi! My name is Alice.", "What is the capital of France?", "And of Italy?",
             "What is my name?"]
    counting = PrefillCounter(starter_chat.loaded.model)
    try:
        expected, full = converse(plain, lines, counter=counting)
        replies, prefills = converse(reusing, lines, counter=counting)
    finally:
        counting.handle.remove()
    print("starter replies:", replies, "prefills:", prefills, "without reuse:", full)
    assert replies == expected
    assert prefills[0] == full[0]
    for turn in range(1, len(lines)):
        assert prefills[turn] <= full[turn] - full[turn - 1]


def test_a_cache_that_fails_to_crop_is_replaced_not_fatal(tiny_chat, monkeypatch):
    from transformers.cache_utils import DynamicCache

    chat, plain = fresh(tiny_chat), fresh(tiny_chat, reuse=False)
    history: list[Turn] = []
    converse(chat, USER_LINES[:1], history)

    def broken_crop(self, tokens_to_remove):
        raise RuntimeError("this cache cannot be cropped")

    monkeypatch.setattr(DynamicCache, "crop", broken_crop)
    # Cropping is needed: the cache ends with the reply's tokens, the new prompt with its text.
    edited = history[:1] + [Turn("assistant", "something else entirely"),
                            Turn("user", USER_LINES[1])]
    assert chat.reply(edited) == plain.reply(edited)
    assert chat.kv_reused_tokens == 0
