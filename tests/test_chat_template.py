"""The DialoGPT chat template gives serving engines the app's own prompt, token for token.

``build_prompt`` is the source of truth; the template (engine.chat.templates) is what exported
personas carry for ``/v1/chat/completions``. Each history is rendered both ways, on the tiny
DialoGPT tokenizer and on GPT-2's real byte-level BPE (rebuilt offline by benchmarks.shapes).
"""

from __future__ import annotations

import pytest

from engine.chat.prompt import build_prompt
from engine.chat.templates import DIALOGPT_CHAT_TEMPLATE, dialogpt_chat_template
from engine.chat.types import Turn

# 1 to 7 turns: plain, unicode (accents, CJK, emoji: byte-level BPE splits them into bytes),
# empty and whitespace-only turns, surrounding spaces and newlines (the template must add or
# strip none), and a turn that spells EOS (the tokenizer reads it as EOS both ways).
HISTORIES = [
    [Turn("user", "hello there how are you today")],
    [Turn("user", "hi"), Turn("assistant", "i am fine thanks and you"), Turn("user", "good")],
    [Turn("user", "Café? naïve façade — 東京 🚀"), Turn("assistant", "¡sí! 😀"),
     Turn("user", "ok")],
    [Turn("user", ""), Turn("assistant", " "), Turn("user", "\n")],
    [Turn("user", "  leading and trailing  "), Turn("assistant", "two\nlines\n"),
     Turn("user", "\ttab")],
    [Turn("user", "a"), Turn("assistant", "b"), Turn("user", "c"), Turn("assistant", "d"),
     Turn("user", "e"), Turn("assistant", "f"), Turn("user", "what is the weather like")],
    [Turn("user", "x<|endoftext|>y"), Turn("assistant", "{{ not jinja }} {% raw %}"),
     Turn("user", "why")],
]


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_persona_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_persona_dir)
    tokenizer.chat_template = dialogpt_chat_template()
    return tokenizer


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    from benchmarks.shapes import gpt2_tokenizer as build

    try:
        tokenizer = build()
    except (ImportError, OSError) as err:  # the bundled Whisper model is not installed
        pytest.skip(f"GPT-2's tokenizer cannot be rebuilt offline here: {err}")
    tokenizer.chat_template = dialogpt_chat_template()
    return tokenizer


def messages(history, system: str | None = None) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    return head + [{"role": t.role, "content": t.text} for t in history]


def app_prompt(tokenizer, history, system: str | None = None):
    return build_prompt(tokenizer, history, prompt_format="dialogpt", context_tokens=100_000,
                        reply_tokens=1, system_prompt=system)


def template_ids(tokenizer, chat: list[dict]) -> list[int]:
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # a BatchEncoding in some transformers versions
        ids = ids["input_ids"]
    return list(ids)


@pytest.mark.parametrize("which", ["tiny_tokenizer", "gpt2_tokenizer"])
@pytest.mark.parametrize("system", [None, "You are a pirate."])
@pytest.mark.parametrize("history", HISTORIES,
                         ids=[f"history{i}-{len(h)}turns" for i, h in enumerate(HISTORIES)])
def test_template_ids_equal_the_apps_dialogpt_prompt(request, which, system, history):
    tokenizer = request.getfixturevalue(which)
    expected = app_prompt(tokenizer, history, system)
    assert expected.turns_dropped == 0
    # The system prompt is left out as build_prompt leaves it out of the DialoGPT layout.
    assert template_ids(tokenizer, messages(history, system)) == expected.ids
    text = tokenizer.apply_chat_template(messages(history, system), add_generation_prompt=True,
                                         tokenize=False)
    assert text == "".join(t.text + tokenizer.eos_token for t in history)
    assert text.endswith(tokenizer.eos_token)  # ready for the reply: no role marker follows


def test_openai_content_parts_render_like_a_string(tiny_tokenizer):
    """Content may come as a list of typed parts (vLLM and transformers serve pass either)."""
    history = HISTORIES[1]
    parts = [{"role": t.role, "content": [{"type": "text", "text": t.text[:1]},
                                          {"type": "text", "text": t.text[1:]}]}
             for t in history]
    assert template_ids(tiny_tokenizer, parts) == app_prompt(tiny_tokenizer, history).ids


def test_generation_prompt_adds_nothing(tiny_tokenizer):
    chat = messages(HISTORIES[2])
    with_prompt = tiny_tokenizer.apply_chat_template(chat, add_generation_prompt=True,
                                                     tokenize=False)
    without = tiny_tokenizer.apply_chat_template(chat, add_generation_prompt=False,
                                                 tokenize=False)
    assert with_prompt == without


def test_the_template_lives_in_one_constant():
    assert dialogpt_chat_template() is DIALOGPT_CHAT_TEMPLATE
