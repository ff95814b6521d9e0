"""Run a stdlib HTTP server on a background thread for the length of a ``with`` block.

Also a fake OpenAI-style inference server (``FakeOpenAi``) to run that way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer


@contextmanager
def serving(server: HTTPServer, name: str = "serve-test") -> Iterator[str]:
    """Yield the server's base URL; shut it down and join its thread afterwards."""
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class FakeOpenAi(ThreadingHTTPServer):
    """An OpenAI-style inference server that misbehaves as scripted, one action per POST.

    It answers ``/v1/completions`` and ``/v1/chat/completions`` with ``words``, streamed as
    server-sent events the way OpenAI does (one chunk per word, a chunk with ``finish_reason``,
    ``data: [DONE]``) or whole, and records every request in ``requests``. ``GET /v1/models``
    lists ``models`` (None: 404 there and on the POST routes, like a TGI-only server);
    ``GET /info`` answers ``info`` (None: 404). ``token``: the bearer token required on every
    route. ``strict``: refuse fields beyond the OpenAI schema (``top_k``,
    ``repetition_penalty``) with 422, as transformers serve does. ``html_everywhere``: every
    route answers a web page.

    Actions: "ok"; "429"/"503" (with ``Retry-After: retry_after`` when set); "401"; "sleep"
    (answer after ``sleep_s``); "cut" (two chunks, then the stream ends); "reset" (two chunks
    of a longer promised body, then the connection drops); "error-event"
    (two chunks, then an error event); "garbage" (an event that is not JSON); "html" (a web
    page with status 200); "dead-worker" (500 with the error transformers serve answers once
    its batching worker has died; every request after it gets the same, and ``GET /health``
    answers 503, as the engine does).
    """

    daemon_threads = True

    def __init__(self, script: list[str] | None = None, *,
                 words: tuple[str, ...] = ("Hello", " from", " the", " fake", " server."),
                 models: tuple[str, ...] | None = ("fake-model",), info: dict | None = None,
                 token: str | None = None, strict: bool = False,
                 retry_after: str | None = None, sleep_s: float = 3.0,
                 html_everywhere: bool = False):
        super().__init__(("127.0.0.1", 0), _OpenAiHandler)
        self.script = list(script or [])
        self.words = words
        self.models = models
        self.info = info
        self.token = token
        self.strict = strict
        self.retry_after = retry_after
        self.sleep_s = sleep_s
        self.html_everywhere = html_everywhere
        self.requests: list[dict] = []  # {"method", "path", "body", "auth", "at"} per request
        self.worker_dead = False  # after a "dead-worker" action
        self.lock = threading.Lock()

    def posts(self) -> list[dict]:
        """The POST requests so far."""
        return [r for r in self.requests if r["method"] == "POST"]


_OPENAI_EXTRAS = ("top_k", "repetition_penalty")


class _OpenAiHandler(BaseHTTPRequestHandler):
    server: FakeOpenAi
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _record(self, body: dict | None) -> int:
        with self.server.lock:
            self.server.requests.append({
                "method": self.command, "path": self.path, "body": body,
                "auth": self.headers.get("Authorization"), "at": time.monotonic()})
            return len(self.server.posts()) - 1 if self.command == "POST" else -1

    def _authorised(self) -> bool:
        if self.server.token and (self.headers.get("Authorization")
                                  != f"Bearer {self.server.token}"):
            self._json(401, {"error": {"message": "Invalid API key", "type": "auth"}})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self._record(None)
        if not self._authorised():
            return
        if self.server.html_everywhere:
            self._send(200, b"<html><body>Welcome</body></html>", "text/html")
        elif self.path == "/v1/models" and self.server.models is not None:
            self._json(200, {"object": "list", "data": [
                {"id": name, "object": "model", "owned_by": "test"}
                for name in self.server.models]})
        elif self.path == "/info" and self.server.info is not None:
            self._json(200, self.server.info)
        elif self.path == "/health":
            if self.server.worker_dead:
                self._json(503, {"status": "unhealthy", "reason": "cb_worker_dead"})
            else:
                self._json(200, {"status": "ok"})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        index = self._record(body)
        if not self._authorised():
            return
        kind = {"/v1/completions": "text", "/v1/chat/completions": "chat"}.get(self.path)
        if self.server.html_everywhere or kind is None or self.server.models is None:
            if self.server.html_everywhere:
                self._send(200, b"<html><body>Welcome</body></html>", "text/html")
            else:
                self._json(404, {"detail": "Not Found"})
            return
        if self.server.strict and set(body) & set(_OPENAI_EXTRAS):
            self._json(422, {"detail": "Unexpected fields in the request: "
                                       f"{sorted(set(body) & set(_OPENAI_EXTRAS))}"})
            return
        script = self.server.script
        action = script[index] if index < len(script) else "ok"
        if self.server.worker_dead:
            action = "dead-worker"  # it stays dead: every request fails from then on
        if action.isdigit():
            headers = ({"Retry-After": self.server.retry_after}
                       if self.server.retry_after and action in ("429", "503") else {})
            self._json(int(action), {"error": {"message": f"scripted {action}",
                                               "type": "test"}}, headers)
        elif action == "sleep":
            time.sleep(self.server.sleep_s)
            self.close_connection = True
        elif action == "html":
            self._send(200, b"<html><body>Please log in</body></html>", "text/html")
        elif action == "dead-worker":
            self.server.worker_dead = True
            self._json(500, {"error": "CB worker is dead and cannot accept request 7f3a: No "
                                      "requests can be scheduled and no requests can be "
                                      "offloaded."})
        elif body.get("stream"):
            self._stream(kind, action)
        else:
            self._whole(kind)

    def _choice(self, kind: str, text: str, *, delta: bool) -> dict:
        if kind == "text":
            return {"index": 0, "text": text, "finish_reason": None}
        key = "delta" if delta else "message"
        return {"index": 0, key: {"role": "assistant", "content": text}, "finish_reason": None}

    def _whole(self, kind: str) -> None:
        choice = self._choice(kind, "".join(self.server.words), delta=False)
        choice["finish_reason"] = "stop"
        self._json(200, {"id": "x", "object": "completion", "choices": [choice]})

    def _stream(self, kind: str, action: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if action == "reset":  # promise more than comes: the client sees a broken transfer
            self.send_header("Content-Length", "100000")
        self.send_header("Connection", "close")
        self.end_headers()
        for i, word in enumerate(self.server.words):
            if i == 2 and action in ("cut", "reset", "error-event", "garbage"):
                if action == "error-event":
                    self._event({"error": {"message": "CUDA out of memory", "type": "server"}})
                elif action == "garbage":
                    self.wfile.write(b"data: {not json\n\n")
                break  # "cut": gone before the final chunk
            self._event({"id": "x", "object": "chunk",
                         "choices": [self._choice(kind, word, delta=True)]})
        else:
            last = self._choice(kind, "", delta=True)
            last["finish_reason"] = "stop"
            self._event({"id": "x", "object": "chunk", "choices": [last]})
            self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _event(self, data: dict) -> None:
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _json(self, status: int, data: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
