"""Prompt building: whole turns dropped oldest first, never a mid-turn cut."""

from __future__ import annotations

import pytest

from engine.chat.prompt import build_prompt
from engine.chat.types import Turn
from engine.errors import ChatError, PromptTooLongError

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_persona_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_persona_dir)


def conversation(n: int) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", f"turn number {i} says hello there")
            for i in range(n)]


def turn_ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]


def test_dialogpt_joins_turns_with_eos(tokenizer):
    history = conversation(3)
    prompt = build_prompt(tokenizer, history, prompt_format="dialogpt", context_tokens=1000,
                          reply_tokens=10)
    expected = [t for turn in history for t in turn_ids(tokenizer, turn.text)]
    assert prompt.ids == expected
    assert prompt.turns_used == 3 and prompt.turns_dropped == 0
    assert prompt.text.count("<|endoftext|>") == 3


def test_dialogpt_drops_oldest_whole_turns_to_fit(tokenizer):
    history = conversation(9)
    per_turn = [len(turn_ids(tokenizer, t.text)) for t in history]
    budget = sum(per_turn[-4:]) + per_turn[0] // 2  # room for 4 turns and half of another
    prompt = build_prompt(tokenizer, history, prompt_format="dialogpt",
                          context_tokens=budget + 16, reply_tokens=16)
    assert prompt.turns_used == 4 and prompt.turns_dropped == 5
    expected = [t for turn in history[-4:] for t in turn_ids(tokenizer, turn.text)]
    assert prompt.ids == expected  # whole turns only: no half turn at the front
    assert len(prompt.ids) <= budget


def test_newest_turn_too_long_is_an_error_not_a_cut(tokenizer):
    history = [Turn("user", "hello there " * 200)]
    with pytest.raises(PromptTooLongError) as caught:
        build_prompt(tokenizer, history, prompt_format="dialogpt", context_tokens=128,
                     reply_tokens=28)
    assert "at most 100" in caught.value.message


def test_reply_budget_larger_than_context(tokenizer):
    with pytest.raises(ChatError) as caught:
        build_prompt(tokenizer, conversation(1), prompt_format="dialogpt", context_tokens=64,
                     reply_tokens=64)
    assert caught.value.code == "reply_budget_too_large"


def test_last_turn_must_be_the_users(tokenizer):
    with pytest.raises(ChatError):
        build_prompt(tokenizer, conversation(2), prompt_format="dialogpt", context_tokens=500,
                     reply_tokens=10)


def test_chat_template_fits_budget_and_starts_with_user(tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = TEMPLATE
    history = conversation(41)
    prompt = build_prompt(tokenizer, history, prompt_format="chat_template",
                          context_tokens=200, reply_tokens=20, system_prompt="be nice")
    assert len(prompt.ids) <= 180
    assert prompt.turns_used + prompt.turns_dropped == 41
    assert 0 < prompt.turns_used < 41
    kept = history[prompt.turns_dropped:]
    assert kept[0].role == "user"
    assert prompt.text.startswith("<|system|>be nice")
    assert prompt.text.endswith("<|assistant|>")
    # Every kept turn is whole; the first dropped one is absent.
    for turn in kept:
        assert f"{turn.text}<|endoftext|>" in prompt.text
    assert f">{history[prompt.turns_dropped - 1].text}<" not in prompt.text


def test_chat_template_missing_is_explained(tokenizer):
    with pytest.raises(ChatError) as caught:
        build_prompt(tokenizer, conversation(1), prompt_format="chat_template",
                     context_tokens=500, reply_tokens=10)
    assert caught.value.code == "chat_template_missing"
