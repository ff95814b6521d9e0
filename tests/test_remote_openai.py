"""The remote backend over the OpenAI-compatible API: a real engine on 127.0.0.1, then faults.

The real engine is ``transformers serve`` (needs ``pip install "transformers[serving]"``) with
the tiny random persona (``/v1/completions``), a tiny chat-template persona
(``/v1/chat/completions``) and, marked slow, the real starter. The faults come from
``tests.http_serving.FakeOpenAi``, which speaks OpenAI's server-sent events.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.chat.remote import RemoteChat, RetryPolicy
from engine.chat.types import Turn
from engine.errors import RemoteError
from tests.http_serving import FakeOpenAi, serving

HELLO = [Turn("user", "hello there how are you")]
HISTORY = [Turn("user", "hello there"), Turn("assistant", "i am fine thanks and you"),
           Turn("user", "what is the weather like")]
FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.05, max_backoff_s=0.1, timeout_s=2.0,
                         reply_timeout_s=2.0)
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|endoftext|>"
                 "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
FAKE_TEXT = "Hello from the fake server."


@pytest.fixture(autouse=True)
def allow_localhost_requests(monkeypatch):
    """Let huggingface_hub's HTTP session talk to servers on 127.0.0.1.

    The suite sets HF_HUB_OFFLINE, which blocks all of huggingface_hub's requests.
    """
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def connect(url: str, chat, **kwargs) -> RemoteChat:
    """``RemoteChat.connect`` for a loaded local chat's persona, retrying quickly."""
    return RemoteChat.connect(url, chat.persona, retry=kwargs.pop("retry", FAST_RETRY),
                              **kwargs)


def direct(url: str, chat, **kwargs) -> RemoteChat:
    """A RemoteChat without asking the server anything (the API and model given)."""
    return RemoteChat(url, chat.persona, chat.loaded.tokenizer, chat.loaded.context_tokens,
                      retry=kwargs.pop("retry", FAST_RETRY), **kwargs)


# -- a real engine: transformers serve ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def transformers_serve(folder: Path, log: Path, *, start_s: float) -> Iterator[str]:
    """``transformers serve FOLDER`` on a free port of 127.0.0.1, offline; killed afterwards."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip('needs transformers serve: pip install "transformers[serving]"')
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder),
             "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"})
    try:
        deadline = time.monotonic() + start_s
        while True:
            if process.poll() is not None:
                pytest.fail(f"transformers serve exited ({process.returncode}):\n"
                            + log.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start in {start_s} s:\n"
                            + log.read_text(errors="replace")[-3000:])
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def tiny_served(tiny_persona_dir, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve-log") / "tiny.log"
    with transformers_serve(tiny_persona_dir, log, start_s=120) as url:
        yield url


@pytest.fixture(scope="module")
def tiny_template_dir(tmp_path_factory) -> Path:
    """The tiny random persona with a chat template of its own (and a system prompt)."""
    from transformers import AutoTokenizer

    from tests.tiny_models import build_tiny_dialogpt

    folder = build_tiny_dialogpt(tmp_path_factory.mktemp("personas") / "tiny-template",
                                 name="Tiny Template")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    persona = json.loads((folder / "persona.json").read_text(encoding="utf-8"))
    persona.update(prompt_format="chat_template", system_prompt="be brief")
    (folder / "persona.json").write_text(json.dumps(persona), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def template_chat(tiny_template_dir):
    from engine.chat.local import LocalChat
    from engine.models.persona import load_persona

    return LocalChat.load(load_persona(tiny_template_dir), device="cpu")


@pytest.fixture(scope="module")
def template_served(tiny_template_dir, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve-log") / "template.log"
    with transformers_serve(tiny_template_dir, log, start_s=120) as url:
        yield url


def test_completions_on_transformers_serve_equal_the_local_reply(tiny_served, tiny_chat):
    client = connect(tiny_served, tiny_chat)  # auto: /v1/models answers, so the OpenAI API
    assert (client.api, client.model) == ("openai", str(tiny_chat.persona.folder))
    assert client.label == f"{tiny_served} · {tiny_chat.persona.folder} (OpenAI API)"
    local = tiny_chat.reply(HELLO)
    assert client.reply(HELLO) == local  # greedy: same model, same prompt, same tokens
    pieces = list(client.stream_reply(HELLO))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == local
    # DialoGPT's EOS-joined history reaches the engine as one prompt, as locally.
    assert client.reply(HISTORY) == tiny_chat.reply(HISTORY)


def test_chat_completions_on_transformers_serve_equal_the_local_reply(template_served,
                                                                      template_chat):
    client = connect(template_served, template_chat)
    assert client.api == "openai"
    local = template_chat.reply(HISTORY)
    assert client.reply(HISTORY) == local  # the server applied the same template
    pieces = list(client.stream_reply(HISTORY))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == local


def test_transformers_serve_refuses_extra_fields_so_they_are_dropped(tiny_served, tiny_chat):
    """It answers 422 to top_k/repetition_penalty; the penalty goes as frequency_penalty."""
    client = connect(tiny_served, tiny_chat, repetition_penalty=1.3, do_sample=True, top_k=5)
    assert len(client.reply(HELLO)) > 0
    assert len(list(client.stream_reply(HELLO))) > 1


def test_tgi_api_at_an_openai_only_engine_says_which_api_to_choose(tiny_served, tiny_chat):
    with pytest.raises(RemoteError) as caught:
        direct(tiny_served, tiny_chat, api="tgi").reply(HELLO)
    assert caught.value.code == "remote_not_found"
    assert "TGI API" in caught.value.message
    assert "OpenAI API" in caught.value.hint


@pytest.mark.slow
def test_the_starter_on_transformers_serve_answers_paris(starter_chat, tmp_path):
    """The real SmolLM2 through /v1/chat/completions (the converted safetensors folder)."""
    from engine.models.loader import converted_gguf, weights_folder

    persona = starter_chat.persona
    folder = converted_gguf(weights_folder(persona), persona.weights.gguf_file)
    question = [Turn("user", "What is the capital of France?")]
    with transformers_serve(folder, tmp_path / "starter.log", start_s=300) as url:
        client = connect(url, starter_chat, retry=RetryPolicy())
        assert client.api == "openai"
        started = time.monotonic()
        reply = client.reply(question)
        print(f"starter on transformers serve replied in {time.monotonic() - started:.1f} s:",
              reply)
        assert "paris" in reply.lower()
        pieces = list(client.stream_reply(question))
        assert len(pieces) > 2 and "paris" in "".join(pieces).lower()


# -- API detection and the request itself --------------------------------------------------------


@contextmanager
def fake(*args, **kwargs) -> Iterator[FakeOpenAi]:
    server = FakeOpenAi(*args, **kwargs)
    with serving(server, name="serve-fake-openai") as url:
        server.url = url
        yield server


def test_auto_picks_the_openai_api_and_the_first_model(tiny_chat):
    with fake(models=("first-model", "second-model")) as server:
        client = connect(server.url, tiny_chat)
        assert (client.api, client.model) == ("openai", "first-model")
        assert client.reply(HELLO) == FAKE_TEXT
        sent = server.posts()[0]
    assert sent["path"] == "/v1/completions" and sent["body"]["model"] == "first-model"


def test_a_model_named_by_the_user_is_sent(tiny_chat):
    with fake(models=("first-model", "second-model")) as server:
        client = connect(server.url + "/v1", tiny_chat, model="second-model")  # OpenAI-style URL
        assert client.reply(HELLO) == FAKE_TEXT
        assert server.posts()[0]["body"]["model"] == "second-model"


def test_auto_picks_tgi_at_the_apps_own_serve_and_names_its_model(tiny_chat):
    from engine.serve import make_server

    with serving(make_server(tiny_chat, port=0)) as url:
        client = connect(url, tiny_chat)
        assert (client.api, client.model) == ("tgi", tiny_chat.persona.base_model)
        assert client.label.endswith("(TGI API)")
        assert client.reply(HELLO) == tiny_chat.reply(HELLO)


def test_auto_falls_back_to_tgi_where_neither_route_answers(tiny_chat):
    with fake(models=None) as server:  # no /v1/models, no /info: an old TGI-shaped server
        client = connect(server.url, tiny_chat)
    assert (client.api, client.model) == ("tgi", None)


def test_completions_request_carries_the_local_prompt_and_decoding(tiny_chat):
    with fake() as server:
        client = connect(server.url, tiny_chat, api="openai")
        assert client.reply(HELLO) == FAKE_TEXT
        assert "".join(client.stream_reply(HELLO)) == FAKE_TEXT
        whole, streamed = (r["body"] for r in server.posts())
    assert whole["prompt"] == tiny_chat.build_prompt(HELLO).text  # EOS-joined, built here
    assert whole["stream"] is False and streamed["stream"] is True
    # The tiny persona is greedy, 12 new tokens, no repetition penalty.
    assert whole["max_tokens"] == 12 and whole["temperature"] == 0.0
    assert whole["repetition_penalty"] == 1.0 and "top_k" not in whole


def test_sampling_settings_are_mapped_to_openai_fields(tiny_chat):
    with fake() as server:
        client = connect(server.url, tiny_chat, do_sample=True, temperature=0.7, top_p=0.9,
                         top_k=40, repetition_penalty=1.2, max_new_tokens=20)
        client.reply(HELLO)
        body = server.posts()[0]["body"]
    assert {k: body[k] for k in ("max_tokens", "temperature", "top_p", "top_k",
                                 "repetition_penalty")} == {
        "max_tokens": 20, "temperature": 0.7, "top_p": 0.9, "top_k": 40,
        "repetition_penalty": 1.2}


def test_a_strict_server_gets_the_request_again_without_extra_fields(tiny_chat):
    with fake(strict=True) as server:
        client = connect(server.url, tiny_chat, repetition_penalty=1.1)
        assert client.reply(HELLO) == FAKE_TEXT
        assert "".join(client.stream_reply(HELLO)) == FAKE_TEXT
        bodies = [r["body"] for r in server.posts()]
    assert len(bodies) == 3  # refused once, then remembered for the next reply
    assert "repetition_penalty" in bodies[0]
    for body in bodies[1:]:
        assert "repetition_penalty" not in body and "top_k" not in body
        assert body["frequency_penalty"] == pytest.approx(0.1)


def test_chat_template_personas_send_messages_trimmed_like_the_local_prompt(template_chat):
    long_history = [Turn("user" if i % 2 == 0 else "assistant",
                         "what is the weather like in berkeley today " * 2) for i in range(9)]
    prompt = template_chat.build_prompt(long_history)
    assert 0 < prompt.turns_used < len(long_history)  # the 128-token budget drops old turns
    with fake() as server:
        client = connect(server.url, template_chat)
        assert client.reply(long_history) == FAKE_TEXT
        sent = server.posts()[0]
    assert sent["path"] == "/v1/chat/completions"
    kept = long_history[len(long_history) - prompt.turns_used:]
    assert sent["body"]["messages"] == [{"role": "system", "content": "be brief"}] + [
        {"role": t.role, "content": t.text} for t in kept]


def test_the_token_goes_as_a_bearer_header(tiny_chat):
    with fake(token="s3cret") as server:
        with pytest.raises(RemoteError) as caught:
            connect(server.url, tiny_chat)  # asking /v1/models needs the token already
        assert caught.value.code == "remote_auth"
        assert "talk-to-transformers token set" in caught.value.hint
        with pytest.raises(RemoteError) as caught:
            direct(server.url, tiny_chat, api="openai", model="m", token="wrong").reply(HELLO)
        assert caught.value.code == "remote_auth" and "HTTP 401" in caught.value.message
        client = connect(server.url, tiny_chat, token="s3cret")
        assert client.reply(HELLO) == FAKE_TEXT
        assert {r["auth"] for r in server.requests} >= {"Bearer s3cret"}


def test_open_backend_passes_api_model_and_token(tiny_persona_dir):
    from engine.chat import open_backend
    from engine.models.persona import load_persona

    persona = load_persona(tiny_persona_dir)
    with fake(models=("a", "b"), token="t0k") as server:
        backend = open_backend(persona, remote=server.url, api="openai", model="b", token="t0k",
                               max_new_tokens=5)
        assert isinstance(backend, RemoteChat)
        assert (backend.api, backend.model, backend.decoding.max_new_tokens) == ("openai", "b", 5)
        assert backend.reply(HELLO) == FAKE_TEXT
        assert server.posts()[0]["body"]["model"] == "b"


def test_cli_chat_flags_reach_the_server(data_dir, tiny_persona_dir, capsys):
    from engine.cli.main import main

    with fake(models=("a", "b")) as server:
        code = main(["chat", "-p", str(tiny_persona_dir), "--remote", server.url,
                     "--remote-api", "openai", "--remote-model", "b", "-m", "hello there"])
        body = server.posts()[0]["body"]
    assert code == 0, capsys.readouterr().err
    assert body["model"] == "b" and body["stream"] is True
    assert FAKE_TEXT in capsys.readouterr().out


# -- faults ------------------------------------------------------------------------------------


def test_busy_answers_are_retried_honouring_retry_after(tiny_chat):
    with fake(["503", "429"], retry_after="1") as server:
        assert connect(server.url, tiny_chat, api="openai").reply(HELLO) == FAKE_TEXT
        times = [r["at"] for r in server.posts()]
    assert len(times) == 3
    # The backoff alone would wait 0.05 s and 0.1 s; the server asked for 1 s each time.
    assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 0.9


def test_always_busy_gives_a_clear_error_after_retries(tiny_chat):
    with fake(["503"] * 5) as server:
        with pytest.raises(RemoteError) as caught:
            list(connect(server.url, tiny_chat, api="openai").stream_reply(HELLO))
        assert len(server.posts()) == 3
    assert caught.value.code == "remote_busy"
    assert "busy (HTTP 503)" in caught.value.message and "tried 3 times" in caught.value.message


def test_a_long_retry_after_is_reported_at_once(tiny_chat):
    with fake(["429"] * 3, retry_after="3600") as server:
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            connect(server.url, tiny_chat, api="openai").reply(HELLO)
        assert len(server.posts()) == 1
    assert time.monotonic() - started < 2
    assert caught.value.code == "remote_busy" and "asks to wait 3600 s" in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
def test_timeouts_are_retried_then_reported(tiny_chat, stream):
    def turn(client: RemoteChat) -> str:
        return "".join(client.stream_reply(HELLO)) if stream else client.reply(HELLO)

    with fake(["sleep"], sleep_s=FAST_RETRY.timeout_s + 1) as server:
        assert turn(connect(server.url, tiny_chat, api="openai")) == FAKE_TEXT
        assert len(server.posts()) == 2
    retry = RetryPolicy(attempts=2, backoff_s=0.05, timeout_s=1.0, reply_timeout_s=1.0)
    with fake(["sleep"] * 2, sleep_s=2.0) as server:
        with pytest.raises(RemoteError) as caught:
            turn(connect(server.url, tiny_chat, api="openai", retry=retry))
    assert caught.value.code == "remote_timeout" and "tried 2 times" in caught.value.message


@pytest.mark.parametrize(("action", "code", "says"), [
    ("cut", "remote_stream_cut", "closed the stream before the reply was finished"),
    ("reset", "remote_stream_cut", "The connection to the server broke mid-reply"),
    ("error-event", "remote_failed", "failed mid-reply: CUDA out of memory"),
])
def test_a_stream_that_breaks_mid_reply_is_reported_not_retried(tiny_chat, action, code, says):
    with fake([action]) as server:
        received = []
        with pytest.raises(RemoteError) as caught:
            for piece in connect(server.url, tiny_chat, api="openai").stream_reply(HELLO):
                received.append(piece)
        assert len(server.posts()) == 1  # a retry would repeat text the user already saw
    assert caught.value.code == code and says in caught.value.message
    assert "incomplete" in caught.value.hint
    assert "".join(received) == "Hello from"  # what arrived before the break was shown


def test_openai_api_at_a_tgi_server_names_the_api_expected(tiny_chat):
    from engine.serve import make_server

    with serving(make_server(tiny_chat, port=0)) as url:
        with pytest.raises(RemoteError) as caught:
            connect(url, tiny_chat, api="openai")  # asks /v1/models for the model name
        assert caught.value.code == "remote_not_found"
        assert "does not speak the OpenAI-compatible API" in caught.value.message
        assert "TGI API" in caught.value.hint
        with pytest.raises(RemoteError) as caught:  # model named: the first POST tells
            direct(url, tiny_chat, api="openai", model="m").reply(HELLO)
        assert caught.value.code == "remote_not_found"
        assert "POST /v1/completions (HTTP 404" in caught.value.message
        assert "OpenAI API" in caught.value.message and "TGI API" in caught.value.hint


def test_a_web_page_is_not_taken_for_an_api(tiny_chat):
    with fake(html_everywhere=True) as server:
        for api in ("auto", "openai"):
            with pytest.raises(RemoteError) as caught:
                connect(server.url, tiny_chat, api=api)
            assert caught.value.code == "remote_protocol"
            assert "web page" in caught.value.message
    with fake(["html"]) as server:  # the route is there, the answer is a login page
        with pytest.raises(RemoteError) as caught:
            connect(server.url, tiny_chat, api="openai").reply(HELLO)
    assert caught.value.code == "remote_protocol"
    assert "POST /v1/completions with a web page" in caught.value.message
    assert "OpenAI-compatible API" in caught.value.message


def test_an_event_that_is_not_json_is_a_protocol_error(tiny_chat):
    with fake(["garbage"]) as server:
        with pytest.raises(RemoteError) as caught:
            list(connect(server.url, tiny_chat, api="openai").stream_reply(HELLO))
    assert caught.value.code == "remote_protocol" and "not JSON" in caught.value.message


def test_nothing_listening_is_reported_after_retries(tiny_chat):
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(RemoteError) as caught:
        connect(url, tiny_chat)
    assert caught.value.code == "remote_unreachable"
    assert caught.value.message.startswith(f"Cannot reach the server at {url}: nothing answers")


def test_offline_mode_is_explained(tiny_chat, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with fake() as server:
        with pytest.raises(RemoteError) as caught:
            connect(server.url, tiny_chat)
    assert caught.value.code == "remote_offline_mode"


def test_an_unknown_api_is_refused(tiny_chat):
    with pytest.raises(RemoteError) as caught:
        connect("http://127.0.0.1:9", tiny_chat, api="grpc")
    assert caught.value.code == "remote_bad_api"


# -- settings ----------------------------------------------------------------------------------


def test_settings_keep_the_remote_api_and_model(data_dir):
    from engine.settings import Settings, load, save

    chosen = Settings(chat_backend="remote", remote_url="http://gpu-box:8000",
                      remote_api="openai", remote_model="microsoft/DialoGPT-large")
    save(chosen)
    assert load() == (chosen, None)


def test_an_unknown_remote_api_in_the_settings_file_is_reset(data_dir):
    from engine.settings import Settings, load

    (data_dir / "settings.json").parent.mkdir(parents=True, exist_ok=True)
    (data_dir / "settings.json").write_text(json.dumps(
        {"schema_version": 2, "remote_api": "grpc", "remote_model": "m"}), encoding="utf-8")
    settings, warning = load()
    assert settings.remote_api == "auto" and settings.remote_model == "m"
    assert "remote_api" in warning and "auto, openai, tgi" in warning
    assert "remote_api" in Settings(remote_api="grpc").field_problems()
