"""``serve`` under load over real sockets: concurrent streams, a burst beyond capacity, stalls.

The clients are the load benchmark's (benchmarks/serve_load.py). Socket timeouts are generous,
so a server that hangs fails a test instead of blocking the run; nothing here asserts a speed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from benchmarks.serve_load import (
    open_stalled_reader,
    open_stalled_sender,
    run_load,
    start_burst,
    start_server,
    stop_server,
    stream_request,
)
from engine.serve import ChatServer, make_server

PROMPTS = [
    "hello there how are you<|endoftext|>",
    "what is the weather like in berkeley<|endoftext|>",
    "do you like music or movies more<|endoftext|>",
]
TIMEOUT = 60.0  # seconds; far above any wait here, so only a hang reaches it


@contextmanager
def serving(chat, **kwargs) -> Iterator[ChatServer]:
    server = make_server(chat, port=0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, name="serve-load-test", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def wait_for(condition, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out: the server hangs"
        time.sleep(0.02)


def test_eight_streaming_clients_all_complete(tiny_chat):
    with serving(tiny_chat, max_waiting=7) as server:  # capacity 8: all eight fit
        results, _ = run_load(server.server_address, PROMPTS, clients=8, seconds=3,
                              timeout=TIMEOUT)
    assert len(results) >= 8
    assert [r.error for r in results if not r.ok] == []
    assert all(r.status == 200 and r.complete and r.pieces >= 1 for r in results)
    assert all(r.first_token_s is not None and r.text.strip() for r in results)
    # Greedy decoding: one prompt, one reply, however the requests interleaved.
    replies = {(r.inputs, r.text) for r in results}
    assert len(replies) == len({r.inputs for r in results})


def test_burst_beyond_capacity_is_refused_at_once(tiny_chat):
    capacity = 4
    with serving(tiny_chat, max_waiting=capacity - 1) as server:
        # Hold the model as a long generation would: the admitted requests wait, so exactly
        # the 8 beyond capacity must be answered, and while the model is still busy.
        with server.generate_lock:
            threads, results = start_burst(server.server_address, PROMPTS[0], capacity + 8,
                                           timeout=TIMEOUT)
            wait_for(lambda: len(results) >= 8)
            refused = list(results)
        for thread in threads:
            thread.join()
    assert [r.status for r in refused] == [503] * 8
    for answer in refused:
        assert answer.retry_after == "1"
        assert answer.body["error_type"] == "overloaded" and answer.body["error"]
    admitted = results[len(refused):]
    assert len(admitted) == capacity
    assert [r.error for r in admitted if not r.ok] == []


def test_stalled_clients_do_not_block_the_others(tiny_chat):
    with serving(tiny_chat, max_waiting=3, client_timeout_s=1.0) as server:
        address = server.server_address
        reader = open_stalled_reader(address, PROMPTS[0], {"max_new_tokens": 100})
        sender = open_stalled_sender(address)
        try:
            after = stream_request(address, PROMPTS[1], timeout=TIMEOUT)
            assert after.ok, after.error
            sender.settimeout(TIMEOUT)
            assert sender.recv(1024) == b""  # dropped after the client timeout, no answer
        finally:
            reader.close()
            sender.close()


@pytest.mark.slow
def test_cli_server_under_load_burst_and_ctrl_c(tiny_persona_dir, tmp_path):
    """The real ``serve`` process: eight clients, a burst beyond capacity, then SIGINT."""
    env = {**os.environ, "TTT_DATA_DIR": str(tmp_path / "data")}
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        server = start_server(str(tiny_persona_dir), max_waiting=7, env=env, stderr=stderr,
                              extra=["--device", "cpu"], load_timeout=300)
        try:
            results, _ = run_load(server.address, PROMPTS, clients=8, seconds=2,
                                  timeout=TIMEOUT)
            # 16 at once while the first of them generates 40 tokens: some must be refused.
            threads, burst = start_burst(server.address, PROMPTS[0], 16,
                                         parameters={"max_new_tokens": 40}, timeout=TIMEOUT)
            for thread in threads:
                thread.join()
        finally:
            status = stop_server(server)
    errors = log.read_text()
    assert status == 0, errors
    assert results and [r.error for r in results if not r.ok] == [], errors
    refused = [r for r in burst if r.status == 503]
    admitted = [r for r in burst if r.status == 200]
    assert len(refused) + len(admitted) == 16
    assert refused and all(r.retry_after == "1" and r.body["error"] for r in refused)
    assert admitted and all(r.ok for r in admitted)
    assert "Traceback" not in errors
