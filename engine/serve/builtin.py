"""``serve --engine builtin``: the local engine behind the TGI ``generate`` API.

So a model can run on a GPU box and be chatted with from a laptop through the remote backend
(or any TGI client). One model generates one reply at a time; a few requests may wait, and
those beyond that get 503 with ``Retry-After`` at once instead of hanging. A client that stalls
(a socket read or write waits on it for ``CLIENT_TIMEOUT_S``) is dropped.
"""

from __future__ import annotations

import hmac
import json
import logging
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engine.cancel import CancelToken
from engine.chat.local import LocalChat
from engine.decoding import DecodingOptions
from engine.errors import TalkError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024  # a prompt larger than this is not a chat prompt
# Seconds one socket read or write may wait for a client. A client that stops sending its
# request, or stops reading its stream once the kernel's buffers are full, is dropped after
# this instead of holding its thread (and, while streaming, the model) for ever.
CLIENT_TIMEOUT_S = 60.0
# TGI parameters mapped onto our decoding options; others are accepted and ignored.
_PARAMS = {
    "do_sample": "do_sample", "temperature": "temperature", "top_k": "top_k", "top_p": "top_p",
    "repetition_penalty": "repetition_penalty", "max_new_tokens": "max_new_tokens",
}


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str, error_type: str):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


class ChatServer(ThreadingHTTPServer):
    """HTTP server holding one :class:`LocalChat`."""

    daemon_threads = True
    # Listen backlog. With socketserver's default of 5, a burst of clients connecting at once
    # overflows it: the kernel resets some connections or drops them for a 1 s SYN retry,
    # instead of each one reaching a handler and getting its 503 at once.
    request_queue_size = 128

    def __init__(self, chat: LocalChat, address: tuple[str, int], *, token: str | None = None,
                 max_waiting: int = 4, client_timeout_s: float = CLIENT_TIMEOUT_S):
        super().__init__(address, _Handler)
        self.chat = chat
        self.token = token
        self.client_timeout_s = client_timeout_s
        self.generate_lock = threading.Lock()  # one generation at a time on one model
        self.slots = threading.BoundedSemaphore(1 + max_waiting)

    @property
    def url(self) -> str:
        """Base URL clients use."""
        host, port = self.server_address[:2]
        # Bound, the address is getsockname()'s, whose host is a str (typeshed also allows the
        # bytes an address may be given in).
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away or timed out is logged in one line, not a traceback."""
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError)):
            log.info("%s dropped: %s", client_address[0], err)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        """Apply the server's client timeout to this connection's socket."""
        # typeshed declares timeout a ClassVar, but StreamRequestHandler.setup reads it through
        # self, so a per-connection value on the instance works.
        self.timeout = self.server.client_timeout_s  # type: ignore[misc]
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        # The request line only: headers (and so the bearer token) are never logged.
        log.info("%s %s", self.address_string(), format % args)

    # -- routes -------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        """Health and model info."""
        if not self._authorised():
            return
        if self.path == "/health":
            self._json(HTTPStatus.OK, {"status": "ok"})
        elif self.path == "/info":
            chat = self.server.chat
            self._json(HTTPStatus.OK, {
                "model_id": chat.persona.base_model,
                "persona": chat.persona.name,
                "max_total_tokens": chat.loaded.context_tokens,
                "device": chat.device,
            })
        else:
            self._error(HTTPStatus.NOT_FOUND, f"No route {self.path}", "not_found")

    def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
        """``/`` (stream chosen by the body), ``/generate`` and ``/generate_stream``."""
        if not self._authorised():
            return
        if self.path not in ("/", "/generate", "/generate_stream"):
            self._error(HTTPStatus.NOT_FOUND, f"No route {self.path}", "not_found")
            return
        try:
            body = self._read_json()
            prompt, options, stream = self._parse(body)
        except _BadRequest as err:
            self._error(err.status, err.message, err.error_type)
            return
        stream = stream or self.path == "/generate_stream"
        if self.path == "/generate":
            stream = False
        if not self.server.slots.acquire(blocking=False):
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "Model is overloaded; retry shortly.",
                        "overloaded", headers={"Retry-After": "1"})
            return
        slot = _Slot(self.server.slots)
        try:
            with self.server.generate_lock:
                self._generate(prompt, options, stream, self.path == "/", slot.release)
        finally:
            slot.release()

    # -- helpers ------------------------------------------------------------------------------
    def _authorised(self) -> bool:
        token = self.server.token
        if not token:
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
        self._error(HTTPStatus.UNAUTHORIZED, "Missing or wrong bearer token.", "authentication")
        return False

    def _read_json(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "Bad Content-Length.", "validation") from None
        if length > MAX_BODY_BYTES:
            raise _BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request body too large.",
                              "validation")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "Body is not valid JSON.",
                              "validation") from None

    def _parse(self, body: Any) -> tuple[list[int], DecodingOptions, bool]:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
            raise _BadRequest(HTTPStatus.UNPROCESSABLE_ENTITY,
                              "Expected a JSON object with a string 'inputs'.", "validation")
        params = body.get("parameters") or {}
        if not isinstance(params, dict):
            raise _BadRequest(HTTPStatus.UNPROCESSABLE_ENTITY, "'parameters' must be an object.",
                              "validation")
        chat = self.server.chat
        overrides = {ours: params[theirs] for theirs, ours in _PARAMS.items()
                     if params.get(theirs) is not None}
        try:
            options = chat.decoding.replace(**overrides)
        except (TalkError, TypeError) as err:
            raise _BadRequest(HTTPStatus.UNPROCESSABLE_ENTITY, str(err), "validation") from err
        ids = chat.loaded.tokenizer.encode(body["inputs"], add_special_tokens=False)
        limit = chat.loaded.context_tokens - options.max_new_tokens
        if not ids or len(ids) > limit:
            raise _BadRequest(HTTPStatus.UNPROCESSABLE_ENTITY,
                              f"inputs must be 1 to {limit} tokens; got {len(ids)}.",
                              "validation")
        return ids, options, bool(body.get("stream"))

    def _generate(self, ids: list[int], options: DecodingOptions, stream: bool,
                  as_list: bool, finished: Callable[[], None]) -> None:
        """Generate and answer; ``finished()`` runs once the model is done, before the last bytes.

        So a client that sends its next request the moment it has read a reply finds the slot
        free: released after the last write, it would race the client and get a 503 it should
        not.
        """
        cancel = CancelToken()
        pieces = self.server.chat.generate(ids, cancel, options)
        if not stream:
            try:
                text = "".join(pieces)
            except TalkError as err:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, err.message, "generation")
                return
            finished()
            payload = {"generated_text": text}
            self._json(HTTPStatus.OK, [payload] if as_list else payload)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        streamed: list[str] = []
        try:
            for piece in pieces:
                streamed.append(piece)
                self._event({"token": {"id": 0, "text": piece, "logprob": 0.0, "special": False},
                             "generated_text": None, "details": None})
            finished()
            self._event({"token": {"id": 0, "text": "", "logprob": 0.0, "special": True},
                         "generated_text": "".join(streamed), "details": None})
        except OSError:  # the client went away or stopped reading (timeout)
            cancel.cancel()  # stop generating for nobody
            pieces.close()
        except TalkError as err:
            self._event({"error": err.message, "error_type": "generation"})

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data:" + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, status: HTTPStatus, payload: Any,
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str, error_type: str,
               headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message, "error_type": error_type}, headers)


class _Slot:
    """One taken place of the server's capacity (waiting or generating), given back once."""

    def __init__(self, slots: threading.BoundedSemaphore):
        self.slots = slots
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.slots.release()


def make_server(chat: LocalChat, host: str = "127.0.0.1", port: int = 8080, *,
                token: str | None = None, max_waiting: int = 4,
                client_timeout_s: float = CLIENT_TIMEOUT_S) -> ChatServer:
    """Bind the server (port 0 picks a free one); call ``serve_forever`` to run it."""
    return ChatServer(chat, (host, port), token=token, max_waiting=max_waiting,
                      client_timeout_s=client_timeout_s)
