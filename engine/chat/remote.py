"""Chat backend that asks a Hugging Face Inference Endpoint or any TGI-speaking server.

The prompt is built here, exactly as for the local backend (the persona's tokenizer and context
budget), and sent as text. Busy servers (429/503), dropped connections and timeouts are retried
with exponential backoff while no token has arrived yet; then the error says what happened.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from engine.cancel import CancelToken
from engine.chat.echo import guarded_stream
from engine.chat.prompt import Prompt, build_prompt
from engine.chat.types import Turn
from engine.decoding import DecodingOptions
from engine.errors import RemoteError
from engine.models.persona import Persona
from engine.net import is_network_error, is_timeout

_RETRY_STATUS = {429, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up."""

    attempts: int = 4  # total tries, the first included
    backoff_s: float = 0.5  # wait before the 2nd try; doubled each time
    max_backoff_s: float = 8.0  # longest single wait
    timeout_s: float = 30.0  # per request: connect, and between streamed tokens


class RemoteChat:
    """A persona's model served elsewhere (TGI API), reached through ``InferenceClient``."""

    def __init__(self, url: str, persona: Persona, tokenizer: Any, context_tokens: int, *,
                 token: str | None = None, decoding: DecodingOptions | None = None,
                 retry: RetryPolicy | None = None):
        from huggingface_hub import InferenceClient

        self.url = url
        self.persona = persona
        self.tokenizer = tokenizer
        self.context_tokens = context_tokens
        self.decoding = decoding or persona.decoding
        self.retry = retry or RetryPolicy()
        self._client = InferenceClient(base_url=url, token=token, timeout=self.retry.timeout_s)

    @classmethod
    def connect(cls, url: str, persona: Persona, *, token: str | None = None,
                retry: RetryPolicy | None = None, **overrides: Any) -> RemoteChat:
        """Load only the persona's tokenizer (for prompt building) and point at ``url``."""
        from engine.models.loader import load_tokenizer

        if not url.startswith(("http://", "https://")):
            raise RemoteError(f"The server URL must start with http:// or https://, not {url!r}.",
                              code="remote_bad_url")
        tokenizer, context = load_tokenizer(persona)
        return cls(url, persona, tokenizer, context, token=token, retry=retry,
                   decoding=persona.decoding.replace(**overrides))

    def build_prompt(self, history: Sequence[Turn]) -> Prompt:
        """Same prompt as the local backend would build."""
        return build_prompt(self.tokenizer, history,
                            prompt_format=self.persona.prompt_format,
                            context_tokens=self.context_tokens,
                            reply_tokens=self.decoding.max_new_tokens,
                            system_prompt=self.persona.system_prompt)

    def reply(self, history: Sequence[Turn], *, cancel: CancelToken | None = None) -> str:
        """The whole reply."""
        return "".join(self.stream_reply(history, cancel=cancel)).strip()

    def stream_reply(self, history: Sequence[Turn], *, cancel: CancelToken | None = None,
                     gate: Any = None) -> Iterator[str]:
        """Yield the reply as the server streams it (``gate``: unused, the server computes)."""
        prompt = self.build_prompt(history)
        cancel = cancel or CancelToken()
        return guarded_stream(lambda: self._stream(prompt.text, cancel), history[-1].text)

    def _stream(self, prompt: str, cancel: CancelToken) -> Iterator[str]:
        params = self.decoding.tgi_parameters()
        for attempt in range(1, self.retry.attempts + 1):
            received = False
            try:
                events = self._client.text_generation(prompt, stream=True, details=True,
                                                      **params)
                finished = False
                seen = 0  # events of any kind: none at all means it is not a TGI server
                for event in events:
                    seen += 1
                    if cancel.cancelled:
                        return
                    if event.generated_text is not None:
                        finished = True
                    token = event.token
                    if token.text and not token.special:
                        received = True
                        yield token.text
                if not finished and not seen:
                    raise RemoteError(
                        f"The server at {self.url} answered, but not with a text-generation "
                        "stream (no events came).",
                        hint="Check that the URL is a TGI server or Inference Endpoint, not "
                             "a web page or another API.",
                        code="remote_protocol",
                    )
                if not finished:
                    raise RemoteError(
                        "The server closed the stream before the reply was finished.",
                        hint="The reply shown so far is incomplete; try again.",
                        code="remote_stream_cut",
                    )
                return
            except RemoteError:
                raise
            except Exception as err:
                error = _classify(err, self.url)
                if received:  # never retry after text reached the user: it would repeat
                    raise RemoteError(
                        f"The connection to the server broke mid-reply ({error.message})",
                        hint="The reply shown so far is incomplete; try again.",
                        code="remote_stream_cut",
                    ) from err
                if error.code not in ("remote_busy", "remote_timeout", "remote_unreachable") \
                        or attempt == self.retry.attempts:
                    if attempt > 1:
                        error.message = f"{error.message.rstrip('.')}; tried {attempt} times."
                    raise error from err
            wait = min(self.retry.backoff_s * 2 ** (attempt - 1), self.retry.max_backoff_s)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if cancel.cancelled:
                    return
                time.sleep(min(0.05, wait))


def _classify(err: Exception, url: str) -> RemoteError:
    """Map a client exception to a RemoteError whose code says what to do about it."""
    from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return RemoteError(
            f"Cannot reach the server at {url}: HF_HUB_OFFLINE is set, and huggingface_hub then "
            "blocks every request, also to your own server.",
            hint="Unset HF_HUB_OFFLINE to chat with a remote server.",
            code="remote_offline_mode")
    if isinstance(err, InferenceTimeoutError) or is_timeout(err):
        return RemoteError(f"The server at {url} did not answer in time.",
                           hint="It may be loading the model or overloaded; try again.",
                           code="remote_timeout")
    # TGI-style JSON errors come back as TextGenerationError raised from the HTTP error.
    http_error = err if isinstance(err, HfHubHTTPError) else err.__cause__
    if isinstance(http_error, HfHubHTTPError) and http_error.response is not None:
        status = http_error.response.status_code
        if status in (401, 403):
            return RemoteError(
                f"The server at {url} refused the token (HTTP {status}).",
                hint="Set the right token: talk-to-transformers token set (or HF_TOKEN).",
                code="remote_auth")
        if status == 404:
            return RemoteError(f"Nothing at {url} (HTTP 404).",
                               hint="Check the endpoint URL.", code="remote_not_found")
        if status in _RETRY_STATUS:
            return RemoteError(f"The server at {url} is busy (HTTP {status}).",
                               hint="Try again in a moment.", code="remote_busy")
        return RemoteError(
            f"The server at {url} failed (HTTP {status}): {_server_message(http_error)}",
            code="remote_failed")
    name = type(err).__name__
    if is_network_error(err):
        # In words, not the client library's class name.
        reason = ("nothing answers there (connection refused, or no such host)"
                  if name == "ConnectError" else "the connection failed")
        return RemoteError(f"Cannot reach the server at {url}: {reason}.",
                           hint="Is it running, and is the URL right?",
                           code="remote_unreachable")
    return RemoteError(f"Unexpected answer from the server at {url}: {name}: {err}",
                       code="remote_protocol")


def _server_message(err: Any) -> str:
    try:
        body = err.response.json()
        return str(body.get("error") or body)[:200]
    except Exception:
        return str(err).splitlines()[0][:200]
