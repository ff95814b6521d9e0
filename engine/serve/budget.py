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
# The reply-length fields each route reads, the first one present winning, as the engine does:
# completions read only max_tokens (and refuse max_completion_tokens with 422).
MAX_TOKEN_FIELDS = {"completions": ("max_tokens",),
                    "chat": ("max_completion_tokens", "max_tokens")}


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
    # chat prompt: messages, tools, the request's chat_template_kwargs (the engine passes them)
    count_messages: Callable[[list[dict[str, Any]], Any, dict[str, Any]], int]
    # OpenAI messages as the engine hands them to the chat template (content parts joined)
    normalise: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = field(
        default_factory=lambda: plain_messages)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, path: str, body: dict[str, Any]) -> None:
        """Raise :class:`BudgetError` unless the request's prompt and reply fit.

        ``body`` has the proxy's defaults applied, so a reply length is there unless the
        persona has none either.
        """
        chat = path.endswith("/chat/completions")
        reply = _reply_tokens(body, MAX_TOKEN_FIELDS["chat" if chat else "completions"])
        # One tokenizer is shared by the proxy's worker threads; Rust tokenizers refuse to be
        # borrowed twice at once ("Already borrowed"). A huge prompt (the proxy takes up to
        # 4 MB) holds the lock for a second or two: the other requests' checks wait that long.
        with self._lock:
            prompt = self._chat_prompt(body) if chat else self._text_prompt(body)
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
            plain = self.normalise(messages)
        except KeyError as err:  # the engine would fail on it too, with a 500
            raise BudgetError(f"A message or content part lacks {err}.",
                              "invalid_messages") from err
        except (TypeError, ValueError, AttributeError) as err:
            raise BudgetError(f"A message or content part is malformed: {err}",
                              "invalid_messages") from err
        extra = body.get("chat_template_kwargs") or {}
        if not isinstance(extra, dict):
            raise BudgetError("chat_template_kwargs must be an object.", "invalid_messages")
        try:
            return self.count_messages(plain, body.get("tools"), extra)
        except BudgetError:
            raise
        except Exception as err:  # noqa: BLE001 (the template's own errors, of any type)
            raise BudgetError(f"The persona's chat template cannot read these messages: "
                              f"{err}", "invalid_messages") from err


def _reply_tokens(body: dict[str, Any], names: tuple[str, ...]) -> int:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BudgetError(f"{name} must be a whole number of at least 1, not {value!r}.",
                              "invalid_max_tokens")
        return value
    raise BudgetError(f"Say how long the reply may be: {names[-1]}.", "invalid_max_tokens")


def plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages as transformers serve gives a text model's chat template.

    A copy of its ``BaseHandler.get_processor_inputs_from_messages`` for a text model, used
    where that cannot be imported: text parts ("text", "input_text", "output_text") joined
    with spaces, other parts dropped, content ignored beside tool calls, whose string
    arguments become objects. ``tests/test_serve_budget.py`` holds the two to the same output.
    """
    import copy

    plain = []
    for message in messages:
        parsed: dict[str, Any] = {"role": message["role"]}
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                call = copy.deepcopy(call)
                function = call.get("function") or call
                if isinstance(function["arguments"], str):
                    function["arguments"] = json.loads(function["arguments"])
                calls.append(call)
            parsed["tool_calls"] = calls
        if "tool_call_id" in message:
            parsed["tool_call_id"] = message["tool_call_id"]
        content = [] if message.get("tool_calls") else (message.get("content") or [])
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parsed["content"] = " ".join(part["text"] for part in content
                                     if part["type"] in ("text", "input_text", "output_text"))
        plain.append(parsed)
    return plain


def _engine_normaliser() -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """The engine's own message conversion, or :func:`plain_messages` without it."""
    try:
        from transformers.cli.serving.utils import BaseHandler, Modality
    except ImportError:
        return plain_messages
    convert: Callable[..., list[dict[str, Any]]] | None = getattr(
        BaseHandler, "get_processor_inputs_from_messages", None)
    if convert is None:
        return plain_messages
    try:  # a later release may change it: then every chat request would fail here, not there
        convert([{"role": "user", "content": "x"}], Modality.LLM)
    except Exception:  # noqa: BLE001 (anything: fall back to the copy)
        return plain_messages
    converter = convert  # bound for the closure, as not None
    return lambda messages: converter(messages, Modality.LLM)


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

    def count_messages(messages: list[dict[str, Any]], tools: Any,
                       extra: dict[str, Any]) -> int:
        if not tokenizer.chat_template:
            raise BudgetError("This persona has no chat template, so it cannot take messages; "
                              "send a prompt to /v1/completions instead.", "no_chat_template")
        encoded: Any = tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=True,
            **extra)
        return len(encoded["input_ids"])

    return RequestBudget(served_context(folder), count_text, count_messages,
                         _engine_normaliser())
