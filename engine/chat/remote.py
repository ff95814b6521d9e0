"""Chat backend that asks an inference server: the OpenAI-compatible API, or TGI's own.

vLLM, SGLang, llama.cpp, Ollama, transformers serve and Inference Endpoints speak the OpenAI
API (:mod:`engine.chat.openai_api`); old TGI servers and the app's own ``serve`` speak TGI's
``generate`` API (``InferenceClient.text_generation``). Which one is asked of the server when
not chosen. The prompt is built here, exactly as for the local backend (the persona's tokenizer
and context budget), and sent as text, except for chat-template personas on the OpenAI API:
their turns go as messages, as many as the same budget holds, and the server applies the
template. Busy servers (429/503, honouring Retry-After), dropped connections and timeouts are
retried with exponential backoff while no text has reached the caller yet; then the error says
what happened.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.cancel import CancelToken
from engine.chat.echo import guarded_stream
from engine.chat.openai_api import (
    API_CHOICES,
    API_LABELS,
    OpenAiApi,
    OpenAiChat,
    OpenAiCompletions,
    detect,
    error_text,
)
from engine.chat.prompt import Prompt, build_prompt
from engine.chat.types import Turn
from engine.decoding import DecodingOptions
from engine.errors import RemoteError
from engine.models.persona import Persona
from engine.net import is_network_error, is_timeout

_RETRY_STATUS = {429, 502, 503, 504}
_RETRY_CODES = ("remote_busy", "remote_timeout", "remote_unreachable")
_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before giving up."""

    attempts: int = 4  # total tries, the first included
    backoff_s: float = 0.5  # wait before the 2nd try; doubled each time
    max_backoff_s: float = 8.0  # longest single wait
    timeout_s: float = 30.0  # per request: connect, and between streamed tokens
    reply_timeout_s: float = 120.0  # a whole reply that is not streamed (OpenAI API)
    max_retry_after_s: float = 10.0  # a busy server asking for a longer wait gets an error now


class _TgiApi:
    """TGI's ``generate`` API through ``InferenceClient``, always streamed.

    Streamed even for a whole reply: the client has one timeout, which for a stream is the wait
    between tokens rather than for the whole reply.
    """

    name = "TGI"
    endpoint = "POST /"

    def __init__(self, url: str, token: str | None, timeout_s: float):
        from huggingface_hub import InferenceClient

        self.url = url
        self._client = InferenceClient(base_url=url, token=token, timeout=timeout_s)

    def pieces(self, prompt: str, decoding: DecodingOptions, *,
               stream: bool) -> Generator[str, None, None]:
        """The reply's text as the server streams it (``stream``: see the class)."""
        events = self._client.text_generation(prompt, stream=True, details=True,
                                              **decoding.tgi_parameters())
        finished = False
        seen = 0  # events of any kind: none at all means it is not a TGI server
        for event in events:
            seen += 1
            if event.generated_text is not None:
                finished = True
            token = event.token
            if token.text and not token.special:
                yield token.text
        if not finished and not seen:
            raise RemoteError(
                f"The server at {self.url} answered, but not with TGI's text-generation "
                "stream (no events came).",
                hint="Check that the URL is a TGI server or Inference Endpoint, not a web page; "
                     "for vLLM, transformers serve or another OpenAI-compatible server choose "
                     "the OpenAI API or auto (--remote-api).",
                code="remote_protocol",
            )
        if not finished:
            raise RemoteError(
                "The server closed the stream before the reply was finished.",
                hint="The reply shown so far is incomplete; try again.",
                code="remote_stream_cut",
            )


class RemoteChat:
    """A persona's model served elsewhere, reached over the OpenAI API or TGI's.

    ``url``, ``api`` (``openai`` or ``tgi``) and ``model`` (None: the server's only one) say
    where, for the window's status line; ``label`` says it in words.
    """

    def __init__(self, url: str, persona: Persona, tokenizer: Any, context_tokens: int, *,
                 api: str = "tgi", model: str | None = None, token: str | None = None,
                 decoding: DecodingOptions | None = None, retry: RetryPolicy | None = None):
        if api not in API_LABELS:
            raise RemoteError(f"Unknown server API {api!r}: choose openai or tgi.",
                              code="remote_bad_api")
        self.url = url
        self.api = api
        self.model = model
        self.persona = persona
        self.tokenizer = tokenizer
        self.context_tokens = context_tokens
        self.decoding = decoding or persona.decoding
        self.retry = retry or RetryPolicy()
        # Chat-template personas send messages: the server knows its model's template.
        self._messages = api == "openai" and persona.prompt_format == "chat_template"
        self._wire: _TgiApi | OpenAiApi
        if api == "tgi":
            self._wire = _TgiApi(url, token, self.retry.timeout_s)
        else:
            kind = OpenAiChat if self._messages else OpenAiCompletions
            self._wire = kind(url, model=model, token=token, timeout_s=self.retry.timeout_s,
                              reply_timeout_s=self.retry.reply_timeout_s)

    @classmethod
    def connect(cls, url: str, persona: Persona, *, api: str = "auto", model: str | None = None,
                token: str | None = None, retry: RetryPolicy | None = None,
                **overrides: Any) -> RemoteChat:
        """Ask the server which API it speaks (``api="auto"``), load the persona's tokenizer.

        Args:
            url: the server, ``http(s)://host:port`` (a trailing ``/v1`` is fine).
            persona: whose prompt format, tokenizer and decoding settings to use.
            api: ``auto``, ``openai`` or ``tgi``.
            model: the model name to send (OpenAI API); None: the server's first.
            token: sent as ``Authorization: Bearer``.
            retry: how hard to try, also for the questions asked here.
            **overrides: decoding settings replacing the persona's.

        """
        from engine.models.loader import load_tokenizer

        if not url.startswith(("http://", "https://")):
            raise RemoteError(f"The server URL must start with http:// or https://, not {url!r}.",
                              code="remote_bad_url")
        if api not in API_CHOICES:
            raise RemoteError(f"Unknown server API {api!r}: choose {', '.join(API_CHOICES)}.",
                              code="remote_bad_api")
        retry = retry or RetryPolicy()
        # Before the tokenizer: a wrong URL is told at once, not after a GGUF conversion.
        spoken, named = _with_retries(
            lambda: detect(url, api=api, model=model, token=token, timeout_s=retry.timeout_s),
            url, retry, endpoint="GET /v1/models")
        tokenizer, context = load_tokenizer(persona)
        return cls(url, persona, tokenizer, context, api=spoken, model=named, token=token,
                   retry=retry, decoding=persona.decoding.replace(**overrides))

    @property
    def label(self) -> str:
        """``URL · model (OpenAI API)``: where replies come from, for a status line."""
        model = f" · {self.model}" if self.model else ""
        return f"{self.url}{model} ({API_LABELS[self.api]})"

    def build_prompt(self, history: Sequence[Turn]) -> Prompt:
        """Same prompt as the local backend would build."""
        return build_prompt(self.tokenizer, history,
                            prompt_format=self.persona.prompt_format,
                            context_tokens=self.context_tokens,
                            reply_tokens=self.decoding.max_new_tokens,
                            system_prompt=self.persona.system_prompt)

    def messages(self, history: Sequence[Turn]) -> list[dict[str, str]]:
        """The newest turns that fit the context budget, as chat messages (system first).

        The budget is counted with the persona's own template, exactly as ``build_prompt``
        trims for the local model.
        """
        used = self.build_prompt(history).turns_used
        system = self.persona.system_prompt
        return ([{"role": "system", "content": system}] if system else []) + [
            {"role": turn.role, "content": turn.text} for turn in history[len(history) - used:]]

    def reply(self, history: Sequence[Turn], *, cancel: CancelToken | None = None) -> str:
        """The whole reply (not streamed on the OpenAI API: one JSON answer)."""
        return "".join(self._guarded(history, cancel, stream=False)).strip()

    def stream_reply(self, history: Sequence[Turn], *, cancel: CancelToken | None = None,
                     gate: Any = None) -> Iterator[str]:
        """Yield the reply as the server streams it (``gate``: unused, the server computes)."""
        return self._guarded(history, cancel, stream=True)

    def _guarded(self, history: Sequence[Turn], cancel: CancelToken | None, *,
                 stream: bool) -> Iterator[str]:
        payload = self.messages(history) if self._messages else self.build_prompt(history).text
        token = cancel or CancelToken()
        return guarded_stream(lambda: self._attempts(payload, token, stream), history[-1].text)

    def _attempts(self, payload: Any, cancel: CancelToken, stream: bool) -> Iterator[str]:
        for attempt in range(1, self.retry.attempts + 1):
            received = False
            try:
                with closing(self._wire.pieces(payload, self.decoding, stream=stream)) as pieces:
                    for piece in pieces:
                        if cancel.cancelled:
                            return
                        received = True
                        yield piece
                return
            except RemoteError:
                raise
            except Exception as err:
                error = _classify(err, self.url, self._wire.endpoint, self.api)
                if received:  # never retry after text reached the user: it would repeat
                    raise RemoteError(
                        f"The connection to the server broke mid-reply ({error.message})",
                        hint="The reply shown so far is incomplete; try again.",
                        code="remote_stream_cut",
                    ) from err
                if not _pause(error, err, attempt, self.retry, cancel):
                    return


def _with_retries(call: Callable[[], _T], url: str, retry: RetryPolicy, *,
                  endpoint: str) -> _T:
    """``call()``, tried again as ``_attempts`` would when busy, timed out or unreachable."""
    attempt = 1
    while True:
        try:
            return call()
        except RemoteError:
            raise
        except Exception as err:
            _pause(_classify(err, url, endpoint, "openai"), err, attempt, retry, CancelToken())
            attempt += 1


def _pause(error: RemoteError, err: Exception, attempt: int, retry: RetryPolicy,
           cancel: CancelToken) -> bool:
    """Wait before the next try, or raise ``error`` when there is none; False when cancelled.

    A busy server's Retry-After is honoured (as the least wait) up to ``max_retry_after_s``;
    a longer one is reported at once rather than keeping someone waiting mid-conversation.
    """
    retry_now = error.code in _RETRY_CODES and attempt < retry.attempts
    wait = min(retry.backoff_s * 2 ** (attempt - 1), retry.max_backoff_s)
    asked = _retry_after(err)
    if retry_now and asked is not None:
        if asked > retry.max_retry_after_s:
            error.message = f"{error.message.rstrip('.')}; it asks to wait {asked:.0f} s."
            error.hint = "Try again later."
            raise error from err
        wait = max(wait, asked)
    if not retry_now:
        if attempt > 1:
            error.message = f"{error.message.rstrip('.')}; tried {attempt} times."
        raise error from err
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if cancel.cancelled:
            return False
        time.sleep(min(0.05, wait))
    return True


def _http_error(err: Exception) -> Any:
    """The huggingface_hub HTTP error behind ``err`` (TGI's JSON errors wrap one), or None."""
    from huggingface_hub.errors import HfHubHTTPError

    http_error = err if isinstance(err, HfHubHTTPError) else err.__cause__
    if isinstance(http_error, HfHubHTTPError) and http_error.response is not None:
        return http_error
    return None


def _retry_after(err: Exception) -> float | None:
    """Seconds a 429/503 answer asks to wait (``Retry-After``: seconds or an HTTP date)."""
    http_error = _http_error(err)
    if http_error is None:
        return None
    value = http_error.response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_WRONG_API_HINTS = {
    "tgi": "Check the URL; for vLLM, transformers serve or another OpenAI-compatible server "
           "choose the OpenAI API or auto (--remote-api).",
    "openai": "Check the URL and the model name (--remote-model); for a TGI server (or the "
              "app's own serve) choose the TGI API or auto (--remote-api).",
}


def _classify(err: Exception, url: str, endpoint: str, api: str) -> RemoteError:
    """Map a client exception to a RemoteError whose code says what to do about it."""
    from huggingface_hub.errors import InferenceTimeoutError, OfflineModeIsEnabled

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
    http_error = _http_error(err)
    if http_error is not None:
        status = http_error.response.status_code
        if status in (401, 403):
            return RemoteError(
                f"The server at {url} refused the token (HTTP {status}).",
                hint="Set the right token: talk-to-transformers token set (or HF_TOKEN).",
                code="remote_auth")
        if status in (404, 405):
            said = _server_message(http_error)
            return RemoteError(
                f"The server at {url} has no {endpoint} (HTTP {status}: {said}): it does not "
                f"speak the {API_LABELS[api]}"
                f"{', or has no such model' if api == 'openai' else ''}.",
                hint=_WRONG_API_HINTS[api], code="remote_not_found")
        if status in _RETRY_STATUS:
            return RemoteError(f"The server at {url} is busy (HTTP {status}).",
                               hint="Try again in a moment.", code="remote_busy")
        return RemoteError(
            f"The server at {url} failed (HTTP {status}): "
            f"{_server_message(http_error)}",
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
        return error_text(err.response.json())
    except Exception:
        return str(err).splitlines()[0][:200]
