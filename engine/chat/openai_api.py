"""The OpenAI-compatible API on the wire: ``/v1/completions``, ``/v1/chat/completions``, models.

vLLM, SGLang, llama.cpp's server, Ollama, TGI's Messages API, transformers serve and Hugging Face
Inference Endpoints all speak it. Each call here is one attempt: the caller
(:mod:`engine.chat.remote`) retries, classifies failures and guards against echoes. Requests go
through huggingface_hub's HTTP session, the stack its ``InferenceClient`` uses for TGI, so both
APIs fail with the same exceptions. (``InferenceClient`` itself has no ``/v1/completions``.)
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

from engine.decoding import DecodingOptions
from engine.errors import RemoteError

API_CHOICES = ("auto", "openai", "tgi")  # what a person may choose; auto asks the server
API_LABELS = {"openai": "OpenAI API", "tgi": "TGI API"}
# Fields beyond the OpenAI schema; strict servers refuse a request naming them (HTTP 400/422).
_EXTRA_FIELDS = ("top_k", "repetition_penalty")
# Answers that are worth another try or mean the token is wrong: raised for the caller to
# classify. Any other status of a probe is an answer about which API is there.
_RAISE_STATUS = {401, 403, 408, 429, 500, 502, 503, 504}
_TGI_HINT = ("If it is a TGI server (or the app's own serve), choose the TGI API or auto "
             "(--remote-api); ")


def base_url(url: str) -> str:
    """``url`` without a trailing slash or ``/v1``: OpenAI clients are often given ``…/v1``."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class OpenAiApi:
    """One OpenAI-style endpoint; subclasses say which and how a reply's text is read."""

    path = ""  # the endpoint, under the base URL
    name = "OpenAI-compatible"  # for messages: "does not speak the ... API"

    def __init__(self, url: str, *, model: str | None, token: str | None, timeout_s: float,
                 reply_timeout_s: float):
        self.url = url  # as the person gave it, for messages
        self.model = model  # None: the server's only model (most engines accept that)
        self._base = base_url(url)
        self._headers = _headers(token)
        self._timeout_s = timeout_s  # connect, and between streamed events
        self._reply_timeout_s = reply_timeout_s  # a whole reply, when not streamed
        self._extras = True  # send _EXTRA_FIELDS until the server refuses them

    @property
    def endpoint(self) -> str:
        """``POST /v1/...``, for messages."""
        return f"POST {self.path}"

    def pieces(self, payload: Any, decoding: DecodingOptions, *,
               stream: bool) -> Generator[str, None, None]:
        """The reply's text: piece by piece (``stream``) or whole, as one piece.

        ``payload`` is the prompt text or the messages, as the subclass expects.

        Raises:
            RemoteError: the server answered, but not in this API, or reported a failure.
            Exception: the HTTP stack's own errors (status, network), for the caller to classify.

        """
        with self._post(payload, decoding, stream) as response:
            if stream:
                yield from self._events(response)
            else:
                yield self._whole(response)

    def _fields(self, payload: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _text(self, choice: dict[str, Any]) -> str | None:
        raise NotImplementedError

    @contextmanager
    def _post(self, payload: Any, decoding: DecodingOptions, stream: bool) -> Iterator[Any]:
        from huggingface_hub import get_session, hf_raise_for_status

        read_s = self._timeout_s if stream else self._reply_timeout_s
        while True:
            body = {**({"model": self.model} if self.model else {}), **self._fields(payload),
                    **decoding.openai_parameters(extras=self._extras), "stream": stream}
            with get_session().stream(
                    "POST", self._base + self.path, json=body, headers=self._headers,
                    timeout=(self._timeout_s, read_s, self._timeout_s, self._timeout_s),
            ) as response:
                if response.status_code < 400:
                    self._check_not_a_page(response)
                    yield response
                    return
                response.read()  # so the error carries the server's words
                if not (self._extras and _refuses_extras(response)):
                    hf_raise_for_status(response)  # raises for every status >= 400
                    raise AssertionError("unreachable")
            # A strict server refused top_k/repetition_penalty: ask again without them, once
            # per backend (nothing was generated, so this is no retry).
            self._extras = False

    def _check_not_a_page(self, response: Any) -> None:
        kind = response.headers.get("content-type", "")
        if kind.startswith(("text/html", "application/xhtml")):
            raise self._wrong_api("with a web page")

    def _wrong_api(self, what: str) -> RemoteError:
        return RemoteError(
            f"The server at {self.url} answered {self.endpoint} {what}, not in the "
            f"{self.name} API.",
            hint=_TGI_HINT + "check that the URL is the server's, not a web page.",
            code="remote_protocol")

    def _events(self, response: Any) -> Iterator[str]:
        finished = False
        seen = 0  # data events: none at all means it is not an OpenAI-style stream
        shown = False
        for line in response.iter_lines():
            # Server-sent events: blank separators, ": keep-alive" comments and "event:"
            # names carry nothing for us.
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":  # vLLM, TGI, OpenAI; transformers serve ends without it
                finished = True
                break
            chunk = self._json(data, "an event that is not JSON")
            seen += 1
            if isinstance(chunk, dict) and chunk.get("error"):
                when = " mid-reply" if shown else ""
                raise RemoteError(
                    f"The server at {self.url} failed{when}: {error_text(chunk)}",
                    hint="The reply shown so far is incomplete; try again." if shown else None,
                    code="remote_failed")
            choice = _first_choice(chunk)
            if choice is None:
                continue  # e.g. a closing usage-only chunk
            if choice.get("finish_reason"):
                finished = True
            text = self._text(choice)
            if text:
                shown = True
                yield text
        if not finished and not seen:
            raise self._wrong_api("without any events")
        if not finished:
            raise RemoteError(
                "The server closed the stream before the reply was finished.",
                hint="The reply shown so far is incomplete; try again.",
                code="remote_stream_cut",
            )

    def _whole(self, response: Any) -> str:
        answer = self._json(response.read().decode("utf-8", "replace"), "something not JSON")
        if isinstance(answer, dict) and answer.get("error"):
            raise RemoteError(f"The server at {self.url} failed: {error_text(answer)}",
                              code="remote_failed")
        choice = _first_choice(answer)
        if choice is None:
            raise self._wrong_api("with JSON that holds no choices")
        return self._text(choice) or ""

    def _json(self, text: str, what: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise self._wrong_api(f"with {what}") from None


class OpenAiCompletions(OpenAiApi):
    """``/v1/completions``: the prompt is built here, as for the local model (DialoGPT)."""

    path = "/v1/completions"

    def _fields(self, payload: Any) -> dict[str, Any]:
        return {"prompt": payload}

    def _text(self, choice: dict[str, Any]) -> str | None:
        return choice.get("text")


class OpenAiChat(OpenAiApi):
    """``/v1/chat/completions``: messages in, the server applies the model's chat template."""

    path = "/v1/chat/completions"

    def _fields(self, payload: Any) -> dict[str, Any]:
        return {"messages": payload}

    def _text(self, choice: dict[str, Any]) -> str | None:
        message = choice.get("delta") or choice.get("message") or {}
        return message.get("content") if isinstance(message, dict) else None


def _first_choice(chunk: Any) -> dict[str, Any] | None:
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def _refuses_extras(response: Any) -> bool:
    if response.status_code not in (400, 422):
        return False
    text = response.text
    return any(name in text for name in _EXTRA_FIELDS)


def error_text(body: Any) -> str:
    """The server's own words from an error body: OpenAI's, TGI's or FastAPI's shape."""
    if isinstance(body, dict):
        error = body.get("error") or body.get("detail") or body.get("message")
        if isinstance(error, dict):
            error = error.get("message") or error
        if error:
            return str(error)[:200]
    return str(body)[:200]


# -- which API a server speaks -----------------------------------------------------------------


def _get_json(url: str, path: str, token: str | None, timeout_s: float) -> tuple[int, Any]:
    """Status and JSON body (None when not JSON) of ``GET path``; auth and busy answers raise."""
    from huggingface_hub import get_session, hf_raise_for_status

    response = get_session().get(base_url(url) + path, headers=_headers(token),
                                 timeout=timeout_s)
    if response.status_code in _RAISE_STATUS:
        hf_raise_for_status(response)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def _model_ids(body: Any) -> list[str] | None:
    """The ids in an OpenAI ``/v1/models`` answer; None when it is not one."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return None
    return [str(item["id"]) for item in data if isinstance(item, dict) and item.get("id")]


def detect(url: str, *, api: str, model: str | None, token: str | None,
           timeout_s: float) -> tuple[str, str | None]:
    """The API to speak (``openai`` or ``tgi``) and the model name to send or show.

    ``auto`` asks ``GET /v1/models`` (OpenAI style; it names the model too), then ``GET /info``
    (TGI). A server with neither route is taken for an old TGI-shaped one that only takes
    ``POST /``: that is what this app spoke before, and the first request says if it is not.
    ``openai`` without a model asks ``/v1/models`` for it.

    Raises:
        RemoteError: the server is not in the API asked for (``remote_not_found``,
            ``remote_protocol``).
        Exception: the HTTP stack's own errors (401, 503, network), for the caller to classify.

    """
    if api == "tgi" or (api == "openai" and model):
        return api, model
    status, body = _get_json(url, "/v1/models", token, timeout_s)
    ids = _model_ids(body) if status == 200 else None
    if ids is not None:
        return "openai", model or (ids[0] if ids else None)
    if api == "openai":
        if status == 200:
            raise RemoteError(
                f"The server at {url} answered GET /v1/models with "
                f"{'a web page or other text' if body is None else 'other JSON'}, not in the "
                "OpenAI-compatible API.",
                hint=_TGI_HINT + "check that the URL is the server's.", code="remote_protocol")
        raise RemoteError(
            f"The server at {url} does not speak the OpenAI-compatible API (GET /v1/models "
            f"answered HTTP {status}).",
            hint=_TGI_HINT + "a server without /v1/models needs the model name "
                             "(--remote-model).",
            code="remote_not_found")
    info_status, info = _get_json(url, "/info", token, timeout_s)
    if info_status == 200 and isinstance(info, dict):
        return "tgi", model or info.get("model_id")
    if status == 200 and info_status == 200:
        raise RemoteError(
            f"The server at {url} answered like a web page: neither the OpenAI-compatible "
            "API (GET /v1/models) nor TGI's (GET /info) is there.",
            hint="Check the URL: it must be the inference server's, not a web page.",
            code="remote_protocol")
    return "tgi", model
