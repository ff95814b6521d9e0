"""How many tokens one request may hold in the engine: its prompt plus the reply it asks for.

transformers serve admits whatever it is sent. Its continuous-batching worker has a paged KV
cache sized for ``max_requests`` full-context sequences (``engine.cache_share``); one request
that outgrows it (``max_tokens: 100000``) makes the worker die with "No requests can be
scheduled", and every request after that is answered "CB worker is dead" until serve is
restarted. So the proxy counts each request's prompt with the persona's own tokenizer, the way
the engine will, and refuses what cannot fit with OpenAI's own error code, before the engine
sees it. Counting is pure CPU work on a tokenizer: the proxy runs it off its event loop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Every persona chats within this many tokens (DialoGPT 1024, the starter 2048), even when its
# model was trained for more (SmolLM2: 8192); the engine's cache is sized from it.
SERVED_CONTEXT_TOKENS = 2048
MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")  # the first one present wins


class BudgetError(ValueError):
    """A request the engine must not see; ``code`` is OpenAI's error code for it."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message, self.code = message, code


@dataclass
class RequestBudget:
    """Checks a generation request against ``context_tokens`` (prompt + reply)."""

    context_tokens: int
    count_text: Callable[[str], int]  # tokens of a completion prompt
    count_messages: Callable[[list[dict[str, Any]], Any], int]  # chat prompt, tools
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, path: str, body: dict[str, Any]) -> None:
        """Raise :class:`BudgetError` unless the request's prompt and reply fit.

        ``body`` has the proxy's defaults applied, so a reply length is always there.
        """
        reply = _reply_tokens(body)
        # One tokenizer is shared by the proxy's worker threads; Rust tokenizers refuse to be
        # borrowed twice at once ("Already borrowed").
        with self._lock:
            prompt = (self._chat_prompt(body) if path.endswith("/chat/completions")
                      else self._text_prompt(body))
        if prompt + reply > self.context_tokens:
            raise BudgetError(
                f"This persona reads at most {self.context_tokens} tokens per request, but "
                f"this one asks for {prompt + reply}: {prompt} in the prompt and {reply} for "
                "the reply. Send a shorter prompt or a smaller max_tokens.",
                "context_length_exceeded")

    def _text_prompt(self, body: dict[str, Any]) -> int:
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            raise BudgetError("prompt must be a string.", "invalid_prompt")
        return self.count_text(prompt)

    def _chat_prompt(self, body: dict[str, Any]) -> int:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(message, dict) for message in messages):
            raise BudgetError("messages must be a non-empty list of objects with a role and "
                              "content.", "invalid_messages")
        try:
            return self.count_messages([_plain(message) for message in messages],
                                       body.get("tools"))
        except BudgetError:
            raise
        except Exception as err:  # noqa: BLE001 (the template's own errors, of any type)
            raise BudgetError(f"The persona's chat template cannot read these messages: "
                              f"{err}", "invalid_messages") from err


def _reply_tokens(body: dict[str, Any]) -> int:
    for name in MAX_TOKEN_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BudgetError(f"{name} must be a whole number of at least 1, not {value!r}.",
                              "invalid_max_tokens")
        return value
    raise BudgetError("Say how long the reply may be: max_tokens.", "invalid_max_tokens")


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """A message whose content parts (``[{"type": "text", "text": ...}]``) are joined text.

    The engine flattens text parts the same way before it applies the template.
    """
    content = message.get("content")
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content
                 if isinstance(part, dict) and part.get("type") == "text"]
        return {**message, "content": "".join(str(text) for text in texts)}
    return message


def served_context(folder: Path) -> int:
    """Tokens per request the engine serves for the model in ``folder``.

    :data:`SERVED_CONTEXT_TOKENS`, or the model's own context where that is shorter (GPT-2
    configs name it ``n_positions``).
    """
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        own = int(config.get("max_position_embeddings") or config.get("n_positions") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        own = 0
    return min(SERVED_CONTEXT_TOKENS, own) if own > 0 else SERVED_CONTEXT_TOKENS


def load_budget(folder: Path) -> RequestBudget:
    """The budget for the model in ``folder``, counted with its own tokenizer.

    Raises what ``AutoTokenizer.from_pretrained`` raises for a folder without a tokenizer.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)

    def count_text(prompt: str) -> int:
        # As the engine tokenizes a completion prompt: special tokens included.
        return len(tokenizer(prompt)["input_ids"])

    def count_messages(messages: list[dict[str, Any]], tools: Any) -> int:
        if not tokenizer.chat_template:
            raise BudgetError("This persona has no chat template, so it cannot take messages; "
                              "send a prompt to /v1/completions instead.", "no_chat_template")
        encoded: Any = tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True)
        return len(encoded["input_ids"])

    return RequestBudget(served_context(folder), count_text, count_messages)
