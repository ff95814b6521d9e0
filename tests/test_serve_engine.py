"""``serve`` on an inference engine: the proxy in front of it, and the whole command.

The proxy's rules (token, capacity, fields the engine refuses) are checked against the fake
OpenAI-style engine of ``tests.http_serving``, in this process. The command itself, marked
slow (it starts ``transformers serve``, tens of seconds on a CPU), runs as a process with the
tiny persona and is reached through the app's own remote backend.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.chat.remote import RemoteChat, RetryPolicy
from engine.chat.types import Turn
from engine.serve.proxy import Proxy, ProxyConfig, listen, run_proxy
from tests.http_serving import FakeOpenAi, serving

ROOT = Path(__file__).resolve().parent.parent
HELLO = [Turn("user", "hello there how are you")]
TOKEN = "tok-123"
START_S = 300.0  # transformers serve on a busy CPU: imports, load, the warm-up request
FAST_RETRY = RetryPolicy(attempts=2, backoff_s=0.05, max_backoff_s=0.1, timeout_s=30.0,
                         reply_timeout_s=60.0)


@pytest.fixture(autouse=True)
def allow_localhost_requests(monkeypatch):
    """Let huggingface_hub's HTTP session (the remote backend's) reach 127.0.0.1.

    The suite sets HF_HUB_OFFLINE, which blocks all of huggingface_hub's requests.
    """
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


# -- the proxy, in front of a fake engine ------------------------------------------------------


@contextmanager
def proxy_in_front(engine_url: str, **config) -> Iterator[str]:
    """The proxy on a free port of 127.0.0.1, on an event loop of its own thread."""
    proxy = Proxy(ProxyConfig(engine_port=int(engine_url.rsplit(":", 1)[1]),
                              engine_model="engine-model", public_model="tiny", **config))
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(proxy.handle, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, name="serve-proxy-test", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(_cancel_the_rest(server), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _cancel_the_rest(server: asyncio.Server) -> None:
    """Close the server and end the connections still open, as asyncio.run does at its end.

    A client that read its Content-Length may be gone before the proxy saw the engine close.
    """
    server.close()
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self):
        return json.loads(self.body)


def call(url: str, path: str, body: dict | list | bytes | None = None,
         token: str | None = None, timeout: float = 30.0) -> Answer:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return Answer(answer.status, dict(answer.headers), answer.read(),
                          time.monotonic() - started)
    except urllib.error.HTTPError as err:
        return Answer(err.code, dict(err.headers), err.read(), time.monotonic() - started)


def test_fields_the_engine_refuses_are_mapped_or_dropped():
    fake = FakeOpenAi(strict=True, models=("engine-model",))  # 422 on top_k, repetition_penalty
    with serving(fake) as engine, proxy_in_front(
            engine, refused_fields=("top_k", "repetition_penalty"),
            defaults={"max_tokens": 12, "temperature": 0.0}) as url:
        answer = call(url, "/v1/completions", {"model": "tiny", "prompt": "hi", "top_k": 5,
                                               "repetition_penalty": 1.3, "temperature": 0.7})
        assert answer.status == 200, answer.body
        assert answer.json()["choices"][0]["text"] == "Hello from the fake server."
        sent = fake.posts()[0]["body"]
    # The engine's model name; frequency_penalty = penalty - 1, as the app's client maps it;
    # the persona's defaults only where the request said nothing.
    assert sent == {"model": "engine-model", "prompt": "hi", "frequency_penalty": 0.3,
                    "temperature": 0.7, "max_tokens": 12}


def test_models_are_listed_under_the_persona_id_and_other_routes_are_404():
    fake = FakeOpenAi(models=("/a/folder/on/the/server",))
    with serving(fake) as engine, proxy_in_front(engine) as url:
        models = call(url, "/v1/models")
        missing = call(url, "/generate_stream", {"inputs": "hi"})
    assert models.status == 200
    assert [m["id"] for m in models.json()["data"]] == ["tiny"]
    assert missing.status == 404 and missing.json()["error"]["type"] == "not_found"
    assert fake.requests == []  # neither reached the engine


def test_stream_passes_through_event_by_event():
    fake = FakeOpenAi()
    with serving(fake) as engine, proxy_in_front(engine) as url:
        answer = call(url, "/v1/completions", {"prompt": "hi", "stream": True})
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/event-stream"
    events = [line for line in answer.body.decode().split("\n\n") if line]
    assert len(events) == 7 and events[-1] == "data: [DONE]"  # 5 words, the finish, DONE
    texts = [json.loads(e[6:])["choices"][0]["text"] for e in events[:-1]]
    assert "".join(texts) == "Hello from the fake server."


def test_bearer_token_is_checked_before_the_engine_sees_anything():
    fake = FakeOpenAi()
    with serving(fake) as engine, proxy_in_front(engine, token=TOKEN) as url:
        missing = call(url, "/v1/completions", {"prompt": "hi"})
        wrong = call(url, "/v1/models", token="tok-12")
        assert fake.requests == []
        right = call(url, "/v1/completions", {"prompt": "hi"}, token=TOKEN)
    assert (missing.status, wrong.status, right.status) == (401, 401, 200)
    assert missing.json()["error"]["type"] == "authentication"
    assert fake.posts()[0]["auth"] is None  # the token is the proxy's, not passed on


def test_requests_beyond_the_budget_never_reach_the_engine(tiny_persona_dir):
    from engine.serve.budget import load_budget

    fake = FakeOpenAi()
    with serving(fake) as engine, proxy_in_front(
            engine, budget=load_budget(tiny_persona_dir), defaults={"max_tokens": 12}) as url:
        huge = call(url, "/v1/completions", {"prompt": "hi", "max_tokens": 100_000})
        not_json = call(url, "/v1/completions", b"{not json")
        list_body = call(url, "/v1/chat/completions", [{"role": "user"}])
        assert fake.requests == []
        fine = call(url, "/v1/completions", {"prompt": "hi"})  # the persona's 12 tokens
        null = call(url, "/v1/completions", {"prompt": "hi", "max_tokens": None})
    assert (huge.status, not_json.status, list_body.status, fine.status) == (400, 400, 400, 200)
    assert null.status == 200 and fake.posts()[1]["body"]["max_tokens"] == 12  # as left out
    assert huge.json()["error"]["code"] == "context_length_exceeded"
    assert "at most 128 tokens" in huge.json()["error"]["message"]
    assert not_json.json()["error"]["code"] == "invalid_json"
    assert "JSON object" in list_body.json()["error"]["message"]
    assert fake.posts()[0]["body"]["max_tokens"] == 12


def test_a_streamed_client_that_hangs_up_frees_its_place_at_once():
    import socket

    fake = FakeOpenAi(["sleep"], sleep_s=6.0)  # the engine holds the first request 6 s
    with serving(fake) as engine, proxy_in_front(engine, max_requests=1) as url:
        port = int(url.rsplit(":", 1)[1])
        body = json.dumps({"prompt": "hi", "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
                           + str(len(body)).encode() + b"\r\n\r\n" + body)
            deadline = time.monotonic() + 10
            while not fake.posts():
                assert time.monotonic() < deadline, "the request never reached the engine"
                time.sleep(0.02)
        # Hung up before the engine sent a byte. With one place, the next request is admitted
        # only once the proxy has let go of the first.
        while (after := call(url, "/v1/completions", {"prompt": "x"})).status == 503:
            assert time.monotonic() < deadline, "the place was never freed"
            time.sleep(0.05)
        first, second = fake.posts()
    assert after.status == 200
    # Freed at the hang-up, not when the engine ended the first request 6 s later.
    assert second["at"] - first["at"] < fake.sleep_s


def _run_proxy_until_clients_finish(proxy: Proxy, clients, *, engine_alive=lambda: True,
                                    restart=None) -> bool:
    """``run_proxy`` on this (the main) thread, as serve runs it; ``clients(url)`` on another.

    When the clients are done, SIGINT stops the proxy, as Ctrl-C does.
    """
    failures: list[BaseException] = []

    def drive(url: str) -> None:
        try:
            clients(url)
        except BaseException as err:  # noqa: BLE001 (re-raised on the test's thread)
            failures.append(err)
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    def listening(address: tuple[str, int]) -> None:
        threading.Thread(target=drive, args=(f"http://127.0.0.1:{address[1]}",),
                         daemon=True).start()

    with listen("127.0.0.1", 0) as sock:
        stopped = asyncio.run(run_proxy(proxy, sock, on_listening=listening,
                                        engine_alive=engine_alive, restart=restart))
    if failures:
        raise failures[0]
    return stopped


def test_an_engine_whose_batching_worker_died_is_restarted_behind_the_proxy():
    dead, fresh = FakeOpenAi(["dead-worker"]), FakeOpenAi()
    reasons: list[str] = []
    seen: dict[str, object] = {}
    with serving(dead) as dead_url, serving(fresh) as fresh_url:
        proxy = Proxy(ProxyConfig(engine_port=int(dead_url.rsplit(":", 1)[1]),
                                  engine_model="engine-model", public_model="tiny"))

        async def restart(why: str) -> int:
            reasons.append(why)
            await asyncio.sleep(1.0)  # the new engine loading
            return int(fresh_url.rsplit(":", 1)[1])

        def clients(url: str) -> None:
            seen["first"] = call(url, "/v1/completions", {"prompt": "x"})
            answers = []
            deadline = time.monotonic() + 20
            while not answers or answers[-1].status != 200:
                assert time.monotonic() < deadline, [a.status for a in answers]
                answers.append(call(url, "/v1/completions", {"prompt": "x"}))
                time.sleep(0.05)
            seen["answers"] = answers

        stopped = _run_proxy_until_clients_finish(proxy, clients, restart=restart)
    assert stopped is True  # by SIGINT, after the clients were answered again
    assert seen["first"].status == 500  # the engine's own answer, passed on
    assert reasons == ["its batching worker died"]  # from its /health, within a second
    statuses = [a.status for a in seen["answers"]]
    # Its failures passed on until the health check, then 503 while it restarts, then served.
    assert set(statuses) <= {500, 503, 200} and statuses[-1] == 200
    assert statuses == sorted(statuses, key=[500, 503, 200].index)
    waiting = [a for a in seen["answers"] if a.status == 503]
    assert waiting, "no request came while the engine restarted"
    assert all(a.json()["error"]["type"] == "restarting" and a.headers["Retry-After"] == "10"
               for a in waiting)
    assert len(dead.posts()) == 1 + statuses.count(500)
    assert len(fresh.posts()) == 1
    # Asked once the generation failed: the health answer names the dead worker.
    assert [r["path"] for r in dead.requests if r["method"] == "GET"] == ["/health"]


def test_a_reply_that_mentions_a_dead_worker_does_not_restart_the_engine():
    # The engine's health decides, never a reply's text: anyone could ask for these words.
    fake = FakeOpenAi(words=("The", " CB worker is dead", " and", " CB worker died."))
    reasons: list[str] = []

    async def restart(why: str) -> int:
        reasons.append(why)
        return fake.server_address[1]

    with serving(fake) as engine_url:
        proxy = Proxy(ProxyConfig(engine_port=int(engine_url.rsplit(":", 1)[1]),
                                  engine_model="m", public_model="tiny"))

        def clients(url: str) -> None:
            for stream in (False, True, False):
                assert call(url, "/v1/completions", {"prompt": "x", "stream": stream}
                            ).status == 200
            time.sleep(1.5)  # a tick of the proxy's watch

        assert _run_proxy_until_clients_finish(proxy, clients, restart=restart) is True
    assert reasons == []
    # Its health is asked after a failed generation (or every 30 s), not after good ones.
    assert [r["path"] for r in fake.requests if r["method"] == "GET"] == []


def test_ctrl_c_while_the_engine_restarts_stops_at_once():
    cleaned: list[str] = []

    async def restart(why: str) -> int:
        try:
            await asyncio.sleep(60)  # a slow load
        except asyncio.CancelledError:
            cleaned.append(why)  # the CLI stops the half-started engine here
            raise
        return 0

    proxy = Proxy(ProxyConfig(engine_port=9, engine_model="m", public_model="tiny"))

    def clients(url: str) -> None:
        deadline = time.monotonic() + 10
        while not proxy.restarting:
            assert time.monotonic() < deadline, "the restart never began"
            time.sleep(0.05)
        assert call(url, "/v1/completions", {"prompt": "x"}).status == 503

    started = time.monotonic()
    assert _run_proxy_until_clients_finish(proxy, clients, engine_alive=lambda: False,
                                           restart=restart) is True
    assert cleaned == ["it exited"]
    assert time.monotonic() - started < 30  # not the 60 s load


def test_an_engine_that_cannot_be_restarted_ends_serving_with_the_reason():
    from engine.errors import ModelLoadError

    async def restart(why: str) -> int:
        raise ModelLoadError(f"gave up: {why}")

    proxy = Proxy(ProxyConfig(engine_port=9, engine_model="m", public_model="tiny"))
    with listen("127.0.0.1", 0) as sock, pytest.raises(ModelLoadError,
                                                       match="gave up: it exited"):
        asyncio.run(run_proxy(proxy, sock, on_listening=lambda address: None,
                              engine_alive=lambda: False, restart=restart))


def test_beyond_capacity_is_refused_at_once_with_retry_after():
    fake = FakeOpenAi(["sleep", "sleep"], sleep_s=3.0)  # two requests held for 3 s
    with serving(fake) as engine, proxy_in_front(engine, max_requests=2) as url:
        outcomes: list[object] = []

        def hold() -> None:
            try:
                outcomes.append(call(url, "/v1/completions", {"prompt": "x"}))
            except OSError as err:  # expected: the fake closes without an answer after its sleep
                outcomes.append(err)

        held = [threading.Thread(target=hold) for _ in range(2)]
        for thread in held:
            thread.start()
        deadline = time.monotonic() + 10
        while len(fake.posts()) < 2:
            assert time.monotonic() < deadline, "the held requests never reached the engine"
            time.sleep(0.02)
        refused = call(url, "/v1/completions", {"prompt": "x"})
        models = call(url, "/v1/models")  # not a generation: answered while full
        for thread in held:
            thread.join()
        after = call(url, "/v1/completions", {"prompt": "x"})  # the places are free again
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["type"] == "overloaded"
    assert refused.seconds < 1.0  # at once, not after the held ones
    assert models.status == 200
    assert after.status == 200
    assert len(outcomes) == 2 and all(isinstance(o, OSError) for o in outcomes)
    assert len(fake.posts()) == 3  # the refused one never reached the engine


# -- the serve command on transformers serve ----------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen
    url: str
    engine_url: str
    engine_pid: int
    banner: str


def start_serve(persona_dir: Path, tmp_path: Path, *extra: str,
                token: str | None = None) -> Served:
    env = {k: v for k, v in os.environ.items() if k != "TTT_SERVE_TOKEN"}
    env.update(TTT_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    if token:
        env["TTT_SERVE_TOKEN"] = token
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "-p", str(persona_dir), "--port", "0",
         "--engine", "transformers", "--device", "cpu", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(START_S, process.kill)
    watchdog.start()
    engine = None
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("Engine:"):
                engine = re.search(r"(http://\S+) \(pid (\d+)", line)
            if line.startswith("Serving"):
                url = re.search(r"http://\S+", line)
                assert url and engine, line
                return Served(process, url[0], engine[1], int(engine[2]), line)
    finally:
        watchdog.cancel()
    stop_serve(process)
    pytest.fail(f"serve exited ({process.returncode}) before serving:\n{process.stderr.read()}")


def stop_serve(process: subprocess.Popen, sig: int = signal.SIGINT) -> int:
    process.send_signal(sig)
    try:
        return process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def served(tiny_persona_dir, tmp_path_factory) -> Iterator[Served]:
    server = start_serve(tiny_persona_dir, tmp_path_factory.mktemp("serve"), token=TOKEN)
    try:
        yield server
    finally:
        stop_serve(server.process)


@pytest.mark.slow
def test_remote_chat_through_serve_equals_the_local_reply(served, tiny_chat):
    assert "bearer token required" in served.banner and "OpenAI API" in served.banner
    client = RemoteChat.connect(served.url, tiny_chat.persona, token=TOKEN, retry=FAST_RETRY)
    assert (client.api, client.model) == ("openai", tiny_chat.persona.id)  # api auto
    local = tiny_chat.reply(HELLO)
    assert client.reply(HELLO) == local  # greedy: same model, same prompt, same tokens
    pieces = list(client.stream_reply(HELLO))
    assert len(pieces) > 1  # streamed through the proxy piece by piece, not in one lump
    assert "".join(pieces).strip() == local


@pytest.mark.slow
def test_serve_wants_its_token(served, tiny_chat):
    from engine.errors import RemoteError

    assert call(served.url, "/v1/models").status == 401
    assert call(served.url, "/v1/completions", {"prompt": "hi"}, token="wrong").status == 401
    with pytest.raises(RemoteError) as caught:
        RemoteChat.connect(served.url, tiny_chat.persona, token="wrong", retry=FAST_RETRY)
    assert "401" in caught.value.message
    assert call(served.url, "/v1/models", token=TOKEN).status == 200
    # The engine itself listens on 127.0.0.1 only, on a port of its own.
    assert served.engine_url.startswith("http://127.0.0.1:") and served.engine_url != served.url


@pytest.mark.slow
def test_serve_keeps_its_engine_within_what_it_can_hold(served):
    """A reply length beyond the engine's KV cache killed its batching worker for good."""
    huge = call(served.url, "/v1/completions", {"prompt": "hello", "max_tokens": 100_000},
                token=TOKEN)
    assert huge.status == 400 and huge.json()["error"]["code"] == "context_length_exceeded"
    # transformers serve would read a whole GenerationConfig from this field; it is dropped.
    sneaky = call(served.url, "/v1/completions", {
        "prompt": "hello", "max_tokens": 3,
        "generation_config": json.dumps({"max_new_tokens": 100_000})}, token=TOKEN)
    assert sneaky.status == 200, sneaky.body
    assert sneaky.json()["usage"]["completion_tokens"] <= 3
    streamed = call(served.url, "/v1/completions", {"prompt": "hello", "max_tokens": 3,
                                                    "stream": True}, token=TOKEN)
    events = [json.loads(line[6:]) for line in streamed.body.decode().split("\n\n")
              if line.startswith("data: {")]
    # Every answer names the model by the persona's id, not by a folder of the server.
    assert events and {event["model"] for event in events} == {"tiny"}
    assert sneaky.json()["model"] == "tiny"


@pytest.mark.slow
def test_an_engine_killed_while_serving_is_restarted(tiny_persona_dir, tmp_path):
    server = start_serve(tiny_persona_dir, tmp_path, "--max-waiting", "0")
    try:
        os.killpg(server.engine_pid, signal.SIGKILL)
        watchdog = threading.Timer(START_S, server.process.kill)
        watchdog.start()
        try:
            lines = []
            for line in server.process.stdout:
                lines.append(line)
                if line.startswith("Engine restarted"):
                    break
        finally:
            watchdog.cancel()
        assert "restarting it" in "".join(lines), lines
        answer = call(server.url, "/v1/completions", {"prompt": "hello", "max_tokens": 4})
        assert answer.status == 200, answer.body
    finally:
        assert stop_serve(server.process) == 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_engine_stops_with_serve(tiny_persona_dir, tmp_path, sig):
    server = start_serve(tiny_persona_dir, tmp_path, "--max-waiting", "0")
    assert "no token" in server.banner and not gone(server.engine_pid)
    assert call(server.url, "/v1/completions", {"prompt": "hello", "max_tokens": 4}).status == 200
    assert stop_serve(server.process, sig) == 0
    assert gone(server.engine_pid)
    with pytest.raises(OSError):
        urllib.request.urlopen(server.engine_url + "/v1/models", timeout=5)


@pytest.mark.slow
def test_a_killed_serve_takes_its_engine_with_it(tiny_persona_dir, tmp_path):
    server = start_serve(tiny_persona_dir, tmp_path, "--max-waiting", "0")
    assert not gone(server.engine_pid)
    assert stop_serve(server.process, signal.SIGKILL) == -signal.SIGKILL
    deadline = time.monotonic() + 20
    while not (gone(server.engine_pid) or _zombie(server.engine_pid)):
        assert time.monotonic() < deadline, "the engine outlived a killed serve"
        time.sleep(0.2)


def _zombie(pid: int) -> bool:
    """Exited but not reaped (an orphan's new parent may be slow to reap it)."""
    try:
        return "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def test_a_port_in_use_is_reported_before_any_engine_starts(tiny_persona_dir, tmp_path):
    with listen("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "engine", "serve", "-p", str(tiny_persona_dir), "--port",
             str(port), "--engine", "transformers", "--device", "cpu"],
            cwd=ROOT, env={**os.environ, "TTT_DATA_DIR": str(tmp_path / "data")},
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Starting" not in result.stdout  # refused before the engine's load, not after


@pytest.mark.slow
def test_an_engine_that_dies_at_start_is_reported_with_its_output(tiny_persona_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_persona_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "-p", str(broken), "--port", "0",
         "--engine", "transformers", "--device", "cpu"],
        cwd=ROOT, env={**os.environ, "TTT_DATA_DIR": str(tmp_path / "data")},
        capture_output=True, text=True, timeout=START_S)
    assert result.returncode == 1
    assert "engine exited (status" in result.stderr and "before it served" in result.stderr
    assert "Error" in result.stderr  # the engine's own words follow
    assert "Traceback (most recent call last):\n  File" not in result.stdout


def test_the_engine_on_a_cpu_asks_for_a_kv_cache_its_requests_can_fill(tmp_path):
    """The default paged cache of transformers serve took 14 GB of RAM for the starter."""
    import json
    import os

    from engine.serve.engine import cache_share, engine_command

    folder = tmp_path / "model"
    folder.mkdir()
    # SmolLM2-135M's shape: 30 layers, 3 KV heads of 64, trained for 8192 tokens.
    (folder / "config.json").write_text(json.dumps({
        "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "hidden_size": 576, "max_position_embeddings": 8192}))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    eight = cache_share(folder, 8) * total
    assert 1.25 * 2**30 <= eight <= max(1.25 * 2**30, 2 * 2 * 30 * 3 * 64 * 4 * 2048 * 8) + 1
    command = engine_command("transformers", folder, 1234, device="cpu", name="p",
                             max_requests=8)
    share = float(command[command.index("--cb-max-memory-percent") + 1])
    assert share == pytest.approx(cache_share(folder, 8), abs=1e-4) and share <= 0.5
    on_gpu = engine_command("transformers", folder, 1234, device="cuda", name="p",
                            max_requests=8)
    assert "--cb-max-memory-percent" not in on_gpu  # a GPU's own sizing is the point there
