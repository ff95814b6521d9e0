"""Turns a conversation into model input that fits the context window.

Pure logic over a tokenizer: the oldest whole turns are dropped until the prompt plus the reply
budget fits. A turn is never cut in the middle; if the newest user turn alone is too long the
caller gets :class:`PromptTooLongError` with the sizes, not a silently truncated prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.chat.types import Turn
from engine.errors import ChatError, PromptTooLongError
from engine.models.persona import PromptFormat

# Rough per-message cost of chat-template markup, used only to pick a first window quickly.
_TEMPLATE_OVERHEAD_TOKENS = 8


@dataclass(frozen=True)
class Prompt:
    """Model input for one reply."""

    ids: list[int]  # token ids, ready for generate()
    text: str  # the same prompt as text, for servers that tokenize themselves
    turns_used: int  # how many of the newest turns fit
    turns_dropped: int  # how many older turns were left out


def build_prompt(
    tokenizer: Any,
    history: Sequence[Turn],
    *,
    prompt_format: PromptFormat,
    context_tokens: int,
    reply_tokens: int,
    system_prompt: str | None = None,
) -> Prompt:
    """Build the prompt for a reply to the last turn of ``history``.

    Args:
        tokenizer: a transformers tokenizer (``encode``, ``eos_token_id``, chat template).
        history: the conversation so far; its last turn is the user's.
        prompt_format: ``dialogpt`` (turns joined by EOS) or ``chat_template``.
        context_tokens: the model's context length.
        reply_tokens: tokens kept free for the reply.
        system_prompt: for chat-template personas, an optional system message.

    """
    if not history or history[-1].role != "user":
        raise ChatError("There is no user turn to reply to.", code="no_user_turn")
    budget = context_tokens - reply_tokens
    if budget <= 0:
        raise ChatError(
            f"The reply length ({reply_tokens} tokens) leaves no room in the model's "
            f"{context_tokens}-token context.",
            hint="Lower max_new_tokens in the persona's decoding settings.",
            code="reply_budget_too_large",
        )
    if prompt_format == "dialogpt":
        return _dialogpt(tokenizer, history, budget)
    if prompt_format == "chat_template":
        return _chat_template(tokenizer, history, budget, system_prompt)
    raise ChatError(f"Unknown prompt format {prompt_format!r}.", code="prompt_format_unknown")


def _too_long(newest_tokens: int, budget: int) -> PromptTooLongError:
    return PromptTooLongError(
        f"Your message is {newest_tokens} tokens long; this persona can take at most {budget}.",
        hint="Send a shorter message, or lower the persona's max_new_tokens.",
    )


def _dialogpt(tokenizer: Any, history: Sequence[Turn], budget: int) -> Prompt:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ChatError("This persona's tokenizer has no end-of-sequence token.")
    chunks: list[list[int]] = []
    total = 0
    for turn in reversed(history):
        ids = tokenizer.encode(turn.text, add_special_tokens=False) + [eos]
        if total + len(ids) > budget:
            if not chunks:
                raise _too_long(len(ids), budget)
            break
        chunks.append(ids)
        total += len(ids)
    ids = [tok for chunk in reversed(chunks) for tok in chunk]
    text = tokenizer.decode(ids, skip_special_tokens=False)
    return Prompt(ids, text, len(chunks), len(history) - len(chunks))


def _chat_template(
    tokenizer: Any, history: Sequence[Turn], budget: int, system_prompt: str | None
) -> Prompt:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatError(
            "This persona says it uses a chat template, but its tokenizer has none.",
            hint="Set prompt_format to 'dialogpt' in persona.json, or add a chat template.",
            code="chat_template_missing",
        )
    # First window: estimate from plain token counts, newest first (cheap), then check exactly.
    start = len(history)
    estimate = 0
    for i in range(len(history) - 1, -1, -1):
        estimate += len(tokenizer.encode(history[i].text, add_special_tokens=False))
        estimate += _TEMPLATE_OVERHEAD_TOKENS
        if estimate > budget and start < len(history):
            break
        start = i
    start = _opening_user_turn(history, start)
    while True:
        window = list(history[start:])
        ids = _render(tokenizer, window, system_prompt)
        if len(ids) <= budget:
            break
        if len(window) == 1:
            raise _too_long(len(ids), budget)
        start = _opening_user_turn(history, start + 1)
    text = tokenizer.decode(ids, skip_special_tokens=False)
    return Prompt(ids, text, len(history) - start, start)


def _opening_user_turn(history: Sequence[Turn], start: int) -> int:
    """The first user turn from ``start`` on: templates expect a conversation to open with one.

    Some (Mistral's, Gemma's) raise an error when roles do not alternate from a user turn.
    """
    while start < len(history) - 1 and history[start].role != "user":
        start += 1
    return start


def _render(tokenizer: Any, turns: Sequence[Turn], system_prompt: str | None) -> list[int]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages += [{"role": t.role, "content": t.text} for t in turns]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # some versions return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)
