"""The proxy's request budget: prompt + reply tokens, counted with the persona's own tokenizer.

One request beyond the engine's KV cache kills transformers serve's batching worker for good
(seen: ``max_tokens: 100000`` to the starter), so these are the checks that keep it alive.
"""

from __future__ import annotations

import json

import pytest

from engine.serve.budget import (
    SERVED_CONTEXT_TOKENS,
    BudgetError,
    RequestBudget,
    load_budget,
    plain_messages,
    served_context,
)

CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"


@pytest.fixture(scope="module")
def templated(tiny_persona_dir, tmp_path_factory):
    """The tiny persona with the DialoGPT chat template that export writes."""
    import shutil

    from transformers import AutoTokenizer

    from engine.chat.templates import dialogpt_chat_template

    folder = tmp_path_factory.mktemp("templated") / "tiny"
    shutil.copytree(tiny_persona_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = dialogpt_chat_template()
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def budget(templated) -> RequestBudget:
    return load_budget(templated)


@pytest.fixture(scope="module")
def tokenizer(templated):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(templated)


def refused(budget: RequestBudget, path: str, body: dict) -> BudgetError:
    with pytest.raises(BudgetError) as caught:
        budget.check(path, body)
    return caught.value


def test_the_context_is_the_models_own_when_it_is_shorter(tmp_path, budget):
    assert budget.context_tokens == 128  # the tiny model's n_positions
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    assert served_context(tmp_path) == SERVED_CONTEXT_TOKENS  # SmolLM2: trained for more
    (tmp_path / "config.json").write_text("{not json")
    assert served_context(tmp_path) == SERVED_CONTEXT_TOKENS


def test_a_prompt_is_counted_as_the_engine_tokenizes_it(budget, tokenizer):
    prompt = "hello there how are you " * 5
    tokens = len(tokenizer(prompt)["input_ids"])
    budget.check(TEXT, {"prompt": prompt, "max_tokens": 128 - tokens})  # exactly full: fits
    error = refused(budget, TEXT, {"prompt": prompt, "max_tokens": 129 - tokens})
    assert error.code == "context_length_exceeded"
    assert f"{tokens} in the prompt and {129 - tokens} for the reply" in error.message
    assert "at most 128 tokens" in error.message


def test_a_reply_length_beyond_the_cache_is_refused(budget):
    error = refused(budget, TEXT, {"prompt": "hi", "max_tokens": 100_000})
    assert error.code == "context_length_exceeded" and "100000 for the reply" in error.message
    # max_completion_tokens is what the chat route reads first, as the engine does.
    error = refused(budget, CHAT, {"messages": [{"role": "user", "content": "hi"}],
                                   "max_tokens": 5, "max_completion_tokens": 500})
    assert "500 for the reply" in error.message


def test_a_chat_prompt_is_counted_through_the_personas_template(budget, tokenizer):
    messages = [{"role": "user", "content": "hello there"},
                {"role": "assistant", "content": "hi, how are you"},
                {"role": "user", "content": "fine"}]
    tokens = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                               tokenize=True, return_dict=True)["input_ids"])
    assert 5 < tokens < 40
    budget.check(CHAT, {"messages": messages, "max_tokens": 128 - tokens})
    error = refused(budget, CHAT, {"messages": messages, "max_tokens": 129 - tokens})
    assert f"{tokens} in the prompt" in error.message
    # Content given as text parts counts the same as plain text.
    parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages]
    error = refused(budget, CHAT, {"messages": parts, "max_tokens": 129 - tokens})
    assert f"{tokens} in the prompt" in error.message


def test_every_text_part_the_engine_reads_is_counted(budget):
    # The engine joins "text", "input_text" and "output_text" parts with spaces: a prompt
    # hidden in another part type, or in many empty parts, must not slip past the count.
    big = "hello there " * 200
    for parts in ([{"type": "input_text", "text": big}],
                  [{"type": "output_text", "text": big}],
                  [{"type": "text", "text": ""}] * 400):
        error = refused(budget, CHAT, {"messages": [{"role": "user", "content": parts}],
                                       "max_tokens": 4})
        assert error.code == "context_length_exceeded"


HISTORIES = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "input_text", "text": "b"},
        {"type": "image_url", "image_url": {"url": "x"}}, {"type": "output_text", "text": ""}]}],
    [{"role": "user", "content": None}, {"role": "assistant", "content": "ignored",
      "tool_calls": [{"id": "1", "type": "function",
                      "function": {"name": "f", "arguments": '{"x": 1}'}}]},
     {"role": "tool", "tool_call_id": "1", "content": "2"}],
]


@pytest.mark.parametrize("messages", HISTORIES, ids=["plain", "parts", "tool-calls"])
def test_messages_are_read_as_transformers_serve_reads_them(messages):
    from transformers.cli.serving.utils import BaseHandler, Modality

    engine = BaseHandler.get_processor_inputs_from_messages(messages, Modality.LLM)
    assert plain_messages(messages) == engine


@pytest.mark.parametrize(("path", "body", "code", "words"), [
    (TEXT, {"prompt": "hi"}, "invalid_max_tokens", "max_tokens"),
    (TEXT, {"prompt": "hi", "max_tokens": "12"}, "invalid_max_tokens", "'12'"),
    (TEXT, {"prompt": "hi", "max_tokens": 0}, "invalid_max_tokens", "at least 1"),
    (TEXT, {"prompt": "hi", "max_tokens": 2.5}, "invalid_max_tokens", "whole number"),
    (TEXT, {"prompt": "hi", "max_tokens": True}, "invalid_max_tokens", "True"),
    (TEXT, {"prompt": ["a", "b"], "max_tokens": 4}, "invalid_prompt", "string"),
    (CHAT, {"messages": "hi", "max_tokens": 4}, "invalid_messages", "list"),
    (CHAT, {"messages": [], "max_tokens": 4}, "invalid_messages", "non-empty"),
    (CHAT, {"max_tokens": 4}, "invalid_messages", "list"),
    (CHAT, {"messages": ["hi"], "max_tokens": 4}, "invalid_messages", "objects"),
    (CHAT, {"messages": [{"content": "hi"}], "max_tokens": 4}, "invalid_messages", "'role'"),
    (CHAT, {"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": [1],
            "max_tokens": 4}, "invalid_messages", "chat_template_kwargs"),
    (CHAT, {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "max_tokens": 4},
     "invalid_messages", "'type'"),
    (TEXT, {"prompt": "hi", "max_completion_tokens": 4}, "invalid_max_tokens", "max_tokens"),
], ids=["no-length", "text-length", "zero", "fraction", "bool", "prompt-list", "messages-text",
        "no-messages", "messages-missing", "message-not-object", "no-role", "template-kwargs",
        "part-no-type",
        "completions-read-max-tokens-only"])
def test_malformed_requests_get_a_specific_message(budget, path, body, code, words):
    error = refused(budget, path, body)
    assert error.code == code and words in error.message


def test_a_persona_without_a_chat_template_is_pointed_to_completions(tiny_persona_dir):
    error = refused(load_budget(tiny_persona_dir), CHAT,
                    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert error.code == "no_chat_template" and "/v1/completions" in error.message


def test_a_template_that_cannot_read_the_messages_is_reported(budget):
    def broken(messages, tools, extra):
        raise ValueError("Conversation roles must alternate user/assistant")

    strict = RequestBudget(budget.context_tokens, budget.count_text, broken)
    error = refused(strict, CHAT, {"messages": [{"role": "user", "content": "hi"}],
                                   "max_tokens": 4})
    assert error.code == "invalid_messages" and "must alternate" in error.message
