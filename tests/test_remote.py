"""The remote backend against ``serve`` on localhost, over real sockets, with injected faults."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.chat.remote import RemoteChat, RetryPolicy
from engine.chat.types import Turn
from engine.errors import RemoteError
from engine.serve import make_server

HELLO = [Turn("user", "hello there how are you")]
FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.05, max_backoff_s=0.1, timeout_s=2.0)


@pytest.fixture(autouse=True)
def allow_localhost_requests(monkeypatch):
    """Let huggingface_hub talk to servers on 127.0.0.1.

    The suite sets HF_HUB_OFFLINE, which blocks all of huggingface_hub's requests.
    """
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@contextmanager
def running(server) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, name="serve-test", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def served(tiny_chat):
    with running(make_server(tiny_chat, port=0)) as url:
        yield url


def remote(url: str, tiny_chat, **kwargs) -> RemoteChat:
    return RemoteChat(url, tiny_chat.persona, tiny_chat.loaded.tokenizer,
                      tiny_chat.loaded.context_tokens, retry=kwargs.pop("retry", FAST_RETRY),
                      **kwargs)


class FaultProxy(ThreadingHTTPServer):
    """Sits in front of the real server and misbehaves as scripted, one action per request.

    Actions: "pass", "503", "429", "401", "sleep" (answer after the client's timeout),
    "cut" (forward the stream, then drop the connection after the second event).
    """

    daemon_threads = True

    def __init__(self, upstream: str, script: list[str]):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream.removeprefix("http://")
        self.script = script
        self.requests = 0


class _ProxyHandler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        index = self.server.requests
        self.server.requests += 1
        action = self.server.script[index] if index < len(self.server.script) else "pass"
        if action in ("503", "429", "401"):
            data = json.dumps({"error": "scripted", "error_type": "test"}).encode()
            self.send_response(int(action))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if action == "sleep":
            time.sleep(FAST_RETRY.timeout_s + 1)
            self.close_connection = True
            return
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=30)
        upstream.request("POST", self.path, body, {"Content-Type": "application/json"})
        response = upstream.getresponse()
        self.send_response(response.status)
        self.send_header("Content-Type", response.getheader("Content-Type", ""))
        self.send_header("Connection", "close")
        self.end_headers()
        events = 0
        while line := response.readline():
            self.wfile.write(line)
            self.wfile.flush()
            events += line.startswith(b"data:")
            if action == "cut" and events == 2:
                break  # drop the connection mid-reply
        upstream.close()
        self.close_connection = True


@contextmanager
def proxy(upstream: str, script: list[str]) -> Iterator[FaultProxy]:
    server = FaultProxy(upstream, script)
    with running(server) as url:
        server.url = url
        yield server


def test_remote_reply_equals_local_reply(served, tiny_chat):
    client = remote(served, tiny_chat)
    assert client.build_prompt(HELLO).text == tiny_chat.build_prompt(HELLO).text
    assert client.reply(HELLO) == tiny_chat.reply(HELLO)  # greedy: same model, same prompt


def test_remote_streams_pieces(served, tiny_chat):
    pieces = list(remote(served, tiny_chat).stream_reply(HELLO))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == tiny_chat.reply(HELLO)


def test_busy_server_is_retried_then_succeeds(served, tiny_chat):
    with proxy(served, ["503", "429"]) as faults:
        assert remote(faults.url, tiny_chat).reply(HELLO) == tiny_chat.reply(HELLO)
        assert faults.requests == 3


def test_always_busy_gives_a_clear_error_after_retries(served, tiny_chat):
    with proxy(served, ["503"] * 5) as faults:
        with pytest.raises(RemoteError) as caught:
            remote(faults.url, tiny_chat).reply(HELLO)
    assert caught.value.code == "remote_busy"
    assert "busy (HTTP 503)" in caught.value.message and "tried 3 times" in caught.value.message
    assert faults.requests == 3


def test_timeout_is_retried_then_reported(served, tiny_chat):
    with proxy(served, ["sleep", "pass"]) as faults:
        assert remote(faults.url, tiny_chat).reply(HELLO) == tiny_chat.reply(HELLO)
    with proxy(served, ["sleep"] * 2) as faults:
        retry = RetryPolicy(attempts=2, backoff_s=0.05, timeout_s=FAST_RETRY.timeout_s)
        with pytest.raises(RemoteError) as caught:
            remote(faults.url, tiny_chat, retry=retry).reply(HELLO)
    assert caught.value.code == "remote_timeout"


def test_stream_cut_mid_reply_is_reported_not_retried(served, tiny_chat):
    with proxy(served, ["cut"]) as faults:
        received = []
        with pytest.raises(RemoteError) as caught:
            for piece in remote(faults.url, tiny_chat).stream_reply(HELLO):
                received.append(piece)
    assert caught.value.code == "remote_stream_cut"
    assert received  # what arrived before the cut was shown
    assert faults.requests == 1  # a retry would repeat text the user already saw


def test_offline_mode_is_explained(served, tiny_chat, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RemoteError) as caught:
        remote(served, tiny_chat).reply(HELLO)
    assert caught.value.code == "remote_offline_mode"
    assert "Unset HF_HUB_OFFLINE" in caught.value.hint


def test_connection_refused(tiny_chat):
    server = make_server(tiny_chat, port=0)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    server.server_close()  # nothing listens there now
    with pytest.raises(RemoteError) as caught:
        remote(url, tiny_chat).reply(HELLO)
    assert caught.value.code == "remote_unreachable"
    message = caught.value.message
    assert message.startswith(f"Cannot reach the server at {url}: nothing answers there")
    assert "Error" not in message and "(after" not in message  # words, not class names


def test_token_is_required_and_checked(tiny_chat):
    with running(make_server(tiny_chat, port=0, token="s3cret")) as url:
        with pytest.raises(RemoteError) as caught:
            remote(url, tiny_chat, token="wrong").reply(HELLO)
        assert caught.value.code == "remote_auth"
        with pytest.raises(RemoteError):
            remote(url, tiny_chat).reply(HELLO)
        assert remote(url, tiny_chat, token="s3cret").reply(HELLO) == tiny_chat.reply(HELLO)


def test_requests_beyond_capacity_get_503_at_once(tiny_persona_dir):
    from engine.chat.local import LocalChat
    from engine.models.persona import load_persona

    slow = LocalChat.load(load_persona(tiny_persona_dir), device="cpu", max_new_tokens=100)
    with running(make_server(slow, port=0, max_waiting=0)) as url:
        host = url.removeprefix("http://")
        first = http.client.HTTPConnection(host, timeout=30)
        first.request("POST", "/generate_stream", json.dumps({"inputs": "hello<|endoftext|>"}))
        response = first.getresponse()
        response.readline()  # the first event: generation is under way
        second = http.client.HTTPConnection(host, timeout=5)
        started = time.monotonic()
        second.request("POST", "/generate", json.dumps({"inputs": "hello<|endoftext|>"}))
        answer = second.getresponse()
        assert answer.status == 503
        assert answer.getheader("Retry-After") == "1"
        assert time.monotonic() - started < 2  # refused, not queued
        assert json.loads(answer.read())["error_type"] == "overloaded"
        response.read()
        first.close()
        second.close()


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400),
    (json.dumps({"prompt": "x"}).encode(), 422),
    (json.dumps({"inputs": "hi", "parameters": {"temperature": -1, "do_sample": True}}).encode(),
     422),
    (json.dumps({"inputs": "weather " * 400}).encode(), 422),
])
def test_bad_requests_get_clear_4xx(served, body, status):
    conn = http.client.HTTPConnection(served.removeprefix("http://"), timeout=10)
    conn.request("POST", "/generate", body, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == status
    assert json.loads(answer.read())["error"]
    conn.close()


def test_info_and_health(served, tiny_chat):
    conn = http.client.HTTPConnection(served.removeprefix("http://"), timeout=10)
    conn.request("GET", "/info")
    info = json.loads(conn.getresponse().read())
    assert info["max_total_tokens"] == 128 and info["device"] == "cpu"
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    conn.close()
