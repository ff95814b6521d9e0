"""A thin HTTP proxy in front of the engine: bearer token, capacity, field clean-up, streaming.

transformers serve has no authentication and queues without limit, and refuses request fields
beyond OpenAI's schema; the proxy adds the first two and fixes the third. It is asyncio on the
standard library: one request per connection, the engine's answer piped back byte for byte as
it arrives (server-sent events unbuffered, its own chunked framing untouched), so its cost is
one extra local hop and no parsing of the stream.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from engine.serve.budget import BudgetError, RequestBudget

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024  # a prompt larger than this is not a chat prompt
MAX_HEAD_BYTES = 64 * 1024  # request line and headers
PIPE_CHUNK_BYTES = 64 * 1024  # read size; a read returns what has arrived, not a full chunk
# Seconds a read from or a write to a client may wait: a client that stalls is dropped, and
# with it its request to the engine, instead of holding a place for ever.
CLIENT_TIMEOUT_S = 60.0
RETRY_AFTER_S = 1  # told to clients refused for capacity
GENERATE_ROUTES = ("/v1/completions", "/v1/chat/completions")
# In a reply, the mark of its last choice: a non-null finish_reason (transformers serve leaves
# null ones out, vLLM writes them as null), in the streamed and the whole answer alike.
FINISHED_MARK = re.compile(rb'"finish_reason":\s*"')
FINISHED_MARK_BYTES = 20  # the most the mark spans, spaces included
FORWARDED_GETS = ("/health",)
# What transformers serve's /health answers once its continuous-batching worker has died: it
# stays dead, and every request after it fails until the engine restarts.
DEAD_WORKER_REASON = b"cb_worker_dead"
HEALTH_TIMEOUT_S = 2.0  # a busy engine answers /health late; that is not a failure
# The engine is asked after any generation it failed (a 5xx, or an error event in a stream:
# the worker dies while it serves one), and otherwise this often. Each question is a line in
# its access log, which uvicorn writes whatever serve asks for.
HEALTH_EVERY_S = 30.0
ERROR_EVENT = re.compile(rb'data: ?\{"error"')
RESTART_RETRY_AFTER_S = 10  # told to clients while the engine restarts (a load: seconds)


@dataclass
class ProxyConfig:
    """What the proxy enforces and where it forwards."""

    engine_port: int  # the engine, on 127.0.0.1
    engine_model: str  # the "model" the engine answers to
    public_model: str  # the model name clients see in /v1/models (the persona id)
    token: str | None = None  # bearer token clients must send; None: none needed
    max_requests: int = 5  # generation requests in flight; more get 503 at once
    refused_fields: Sequence[str] = ()  # request fields the engine answers 422 to
    defaults: dict[str, Any] = field(default_factory=dict)  # fields a request may leave out
    client_timeout_s: float = CLIENT_TIMEOUT_S
    budget: RequestBudget | None = None  # prompt + reply tokens a request may ask for


class _Refusal(Exception):
    def __init__(self, status: HTTPStatus, message: str, error_type: str,
                 headers: dict[str, str] | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type
        self.headers, self.code = headers or {}, code


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class Proxy:
    """The proxy's request handling; ``serve`` runs it with :func:`asyncio.start_server`."""

    def __init__(self, config: ProxyConfig):
        self.config = config
        self.in_flight = 0  # generation requests admitted and not yet answered in full
        # Strong references to the running handlers. The stream server forgets a handler when
        # its client disconnects, and one then waiting on the engine is referenced only by a
        # cycle through the engine's stream (held weakly by asyncio): the garbage collector
        # would destroy it mid-request ("Task was destroyed but it is pending").
        self._tasks: set[asyncio.Task[None]] = set()
        self.restarting = False  # the engine is being restarted: generations get 503
        self.engine_suspect = False  # a generation failed: ask the engine's health soon

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection: one request, then close."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError) as err:
            log.info("client dropped: %s", type(err).__name__)
        except asyncio.CancelledError:
            # serve is stopping and cancels the requests still open. Not re-raised: Python
            # 3.10 and 3.11's stream server logs a cancelled handler as an error with its
            # traceback.
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        timeout = self.config.client_timeout_s
        try:
            request = await asyncio.wait_for(_read_request(reader), timeout)
            self._authorise(request)
            if request.method == "GET" and request.path == "/v1/models":
                await self._reply(writer, HTTPStatus.OK, self._models())
                return
            generate = request.method == "POST" and request.path in GENERATE_ROUTES
            if not generate and not (request.method == "GET" and request.path in FORWARDED_GETS):
                raise _Refusal(HTTPStatus.NOT_FOUND, f"No route {request.method} "
                               f"{request.path}", "not_found")
            if generate and self.restarting:
                raise _Refusal(HTTPStatus.SERVICE_UNAVAILABLE,
                               "The engine is restarting; retry in a few seconds.",
                               "restarting", {"Retry-After": str(RESTART_RETRY_AFTER_S)})
            if generate and self.in_flight >= self.config.max_requests:
                raise _Refusal(HTTPStatus.SERVICE_UNAVAILABLE,
                               "Model is overloaded; retry shortly.", "overloaded",
                               {"Retry-After": str(RETRY_AFTER_S)})
        except _Refusal as refusal:
            await self._reply(writer, refusal.status,
                              {"error": {"message": refusal.message, "type": refusal.error_type}},
                              refusal.headers)
            return
        if not generate:
            await self._forward(request, writer)
            return
        self.in_flight += 1  # no await since the check above: no other request came between
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.in_flight -= 1

        try:
            try:
                request.body, streamed = await self._prepare(request)
            except _Refusal as refusal:
                await self._reply(writer, refusal.status, {"error": {
                    "message": refusal.message, "type": refusal.error_type,
                    "code": refusal.code}})
                return
            if streamed:
                await self._forward_watching(request, reader, writer, finished=release)
            else:
                # A reply that is not streamed is generated to its end even when nobody waits
                # for it (the engine notices a gone client only between streamed chunks): its
                # place stays held until then, so the count matches the engine's work.
                await self._forward(request, writer, finished=release)
        finally:
            release()

    def _authorise(self, request: _Request) -> None:
        token = self.config.token
        if not token:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # The scheme is case-insensitive (RFC 9110); the header arrived as latin-1 text.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode("latin-1", "replace"), token.encode("utf-8")):
            raise _Refusal(HTTPStatus.UNAUTHORIZED, "Missing or wrong bearer token.",
                           "authentication")

    def _models(self) -> dict[str, Any]:
        # Answered here, under the persona's id: the engine names its model by its folder,
        # a path on this machine that clients have no use for.
        return {"object": "list", "data": [{"id": self.config.public_model, "object": "model",
                                            "owned_by": "talk-to-transformers"}]}

    async def _prepare(self, request: _Request) -> tuple[bytes, bool]:
        """The body as the engine takes it, and whether the reply is streamed.

        Its model name, refused fields mapped or dropped, the persona's decoding defaults
        filled in; checked against the budget, off the event loop (a tokenizer's work).

        Raises:
            _Refusal: not a JSON object, or beyond the budget.

        """
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise _Refusal(HTTPStatus.BAD_REQUEST, "The request body must be a JSON object.",
                           "invalid_request_error", code="invalid_json")
        for name, value in self.config.defaults.items():
            if body.get(name) is None:  # left out, or null as some clients send it
                body[name] = value
        body["model"] = self.config.engine_model  # one model here, whatever name was sent
        refused = self.config.refused_fields
        if "repetition_penalty" in refused:
            penalty = body.pop("repetition_penalty", None)
            # As the app's client does (DecodingOptions.openai_parameters): transformers serve
            # turns frequency_penalty back into this same repetition penalty.
            if isinstance(penalty, (int, float)) and penalty > 1:
                if body.get("frequency_penalty") is None:  # left out, or null
                    body["frequency_penalty"] = min(round(penalty - 1, 6), 2.0)
        for name in refused:
            body.pop(name, None)
        budget = self.config.budget
        if budget is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, budget.check,
                                                                 request.path, body)
            except BudgetError as err:
                raise _Refusal(HTTPStatus.BAD_REQUEST, err.message, "invalid_request_error",
                               code=err.code) from None
        return json.dumps(body).encode(), bool(body.get("stream"))

    async def _forward_watching(self, request: _Request, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, *,
                                finished: Callable[[], None]) -> None:
        """:meth:`_forward`, stopped when the client hangs up.

        A client sends nothing after its request, so a read that returns ends only at its
        hang-up. Without this, a client gone while the engine queues or reads its prompt (no
        byte yet to fail writing) would hold its place, and its generation, until the first
        chunk came.
        """
        pipe = asyncio.ensure_future(self._forward(request, writer, finished=finished))
        hang_up = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({pipe, hang_up}, return_when=asyncio.FIRST_COMPLETED)
            if not pipe.done() and (hang_up.cancelled() or hang_up.exception() is not None
                                    or hang_up.result() == b""):
                pipe.cancel()  # closes the engine's connection: it stops generating
                await asyncio.gather(pipe, return_exceptions=True)
                log.info("client hung up before its reply ended")
                return
            await pipe
        finally:
            hang_up.cancel()
            pipe.cancel()

    async def _forward(self, request: _Request, writer: asyncio.StreamWriter, *,
                       finished: Callable[[], None] | None = None) -> None:
        """Send the request to the engine and pipe its answer back as it comes.

        ``finished()`` runs when the reply's last choice goes by, before the engine closes the
        connection: a client that sends its next request the moment it has read its reply
        finds its place free, instead of racing the end of this one into a 503.
        """
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1",
                                                                 self.config.engine_port)
        except OSError:
            await self._reply(writer, HTTPStatus.BAD_GATEWAY,
                              {"error": {"message": "The engine is not answering.",
                                         "type": "engine_down"}})
            return
        head = [f"{request.method} {request.path} HTTP/1.1", "Host: 127.0.0.1",
                "Connection: close", f"Content-Length: {len(request.body)}"]
        for name in ("content-type", "accept"):
            if name in request.headers:
                head.append(f"{name}: {request.headers[name]}")
        try:
            up_writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + request.body)
            await up_writer.drain()
            # The engine answers "Connection: close" too, so the client reads to the end.
            tail = b""  # the end of the last chunk: the mark may straddle two
            first = True
            while chunk := await up_reader.read(PIPE_CHUNK_BYTES):
                seen = tail + chunk
                if first and chunk.startswith(b"HTTP/1.1 5") or ERROR_EVENT.search(seen):
                    self.engine_suspect = True  # never a restart by itself: see worker_dead
                first = False
                if finished is not None and FINISHED_MARK.search(seen):
                    finished()
                    finished = None
                tail = seen[-FINISHED_MARK_BYTES:]  # short reads: keep enough
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), self.config.client_timeout_s)
        finally:
            # A client gone mid-stream closes the engine's connection: it stops generating.
            up_writer.close()

    async def worker_dead(self) -> bool:
        """Whether the engine's ``/health`` says its batching worker has died.

        Asked of the engine itself, not read from replies: a reply's text may say anything.
        An engine that is slow to answer, or has no such route, is not called dead.
        """
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.config.engine_port), HEALTH_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            return False
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            await writer.drain()
            # To its end ("Connection: close"): the status line and the body that names the
            # reason may come in separate packets.
            answer = await asyncio.wait_for(reader.read(), HEALTH_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            return False
        finally:
            writer.close()
        return answer.startswith(b"HTTP/1.1 503") and DEAD_WORKER_REASON in answer

    async def _reply(self, writer: asyncio.StreamWriter, status: HTTPStatus, payload: Any,
                     headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        head = [f"HTTP/1.1 {status.value} {status.phrase}", "Content-Type: application/json",
                f"Content-Length: {len(data)}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        await asyncio.wait_for(writer.drain(), self.config.client_timeout_s)


async def _read_request(reader: asyncio.StreamReader) -> _Request:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _Refusal(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Headers too large.",
                       "validation") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _Refusal(HTTPStatus.BAD_REQUEST, "Bad request line.", "validation")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _Refusal(HTTPStatus.LENGTH_REQUIRED, "Send a Content-Length.", "validation")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _Refusal(HTTPStatus.BAD_REQUEST, "Bad Content-Length.", "validation") from None
    if not 0 <= length <= MAX_BODY_BYTES:
        raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request body too large.",
                       "validation")
    body = await reader.readexactly(length) if length else b""
    path = parts[1].split("?", 1)[0]
    return _Request(parts[0].upper(), path, headers, body)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound before the engine loads.

    A port in use is then reported at once, not after a load of seconds to minutes, and
    clients that connect while the engine loads wait in the backlog instead of being refused.

    Raises:
        OSError: the address cannot be bound.

    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]
    # A burst of clients connecting at once would overflow a small listen backlog.
    return socket.create_server((host, port), family=family, backlog=128)


async def run_proxy(proxy: Proxy, sock: socket.socket, *,
                    on_listening: Callable[[tuple[str, int]], None],
                    engine_alive: Callable[[], bool],
                    restart: Callable[[str], Awaitable[int]] | None = None) -> bool:
    """Serve until SIGINT/SIGTERM (returns True) or the engine fails (returns False).

    The engine fails when its process exits (checked every second) or its ``/health`` says its
    batching worker died (asked after a failed generation, else every 30 s). With ``restart``,
    serving goes on instead: ``await restart(why)`` starts a new engine and returns its port,
    while generation requests are answered 503 with a Retry-After.

    Raises:
        Exception: what ``restart`` raised (it gives up).

    """
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(proxy.handle, sock=sock, limit=MAX_HEAD_BYTES)
    try:
        address = server.sockets[0].getsockname()
        on_listening((str(address[0]), int(address[1])))
        next_health = loop.time() + HEALTH_EVERY_S
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
                continue
            except asyncio.TimeoutError:
                pass
            if not engine_alive():
                why = "it exited"
            else:
                if not (proxy.engine_suspect or loop.time() >= next_health):
                    continue
                proxy.engine_suspect = False
                next_health = loop.time() + HEALTH_EVERY_S
                if not await proxy.worker_dead():
                    continue
                why = "its batching worker died"
            if restart is None:
                return False
            proxy.restarting = True
            restarted = asyncio.ensure_future(restart(why))
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({restarted, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if not restarted.done():  # Ctrl-C while the engine loads: stop now, not after
                restarted.cancel()
                break
            proxy.config.engine_port = restarted.result()
            proxy.restarting = False
    finally:
        # Not wait_closed(): from Python 3.12 it waits for open streams to end; asyncio.run
        # cancels them instead.
        server.close()
    return True
