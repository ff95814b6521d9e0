"""The command line, in-process and as a real process (kill -9, Ctrl-C)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.store import ConversationStore
from tests.tiny_models import build_tiny_dialogpt

ROOT = Path(__file__).resolve().parent.parent


def test_models_list_shows_starter_and_catalogue(data_dir, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "starter" in out and "ready" in out
    assert "models pull dialogpt-large" in out
    assert "berkeley" in out


def test_chat_message_with_tiny_persona(data_dir, tiny_persona_dir, capsys):
    assert main(["chat", "-p", str(tiny_persona_dir), "-m", "hello there"]) == 0
    out = capsys.readouterr().out
    assert "you> hello there" in out and "bot> " in out
    store = ConversationStore(data_dir / "conversations.sqlite3")
    turns = store.turns(store.latest_conversation())
    assert [t.role for t in turns] == ["user", "assistant"]
    assert turns[1].text and turns[1].text in out
    store.close()


def test_continue_resumes_latest_conversation(data_dir, tiny_persona_dir, capsys):
    main(["chat", "-p", str(tiny_persona_dir), "-m", "first"])
    main(["chat", "-p", str(tiny_persona_dir), "--continue", "-m", "second"])
    store = ConversationStore(data_dir / "conversations.sqlite3")
    assert len(store.conversations()) == 1
    assert [t.text for t in store.turns(store.latest_conversation())][::2] == ["first", "second"]
    store.close()


@pytest.mark.parametrize(("argv", "says"), [
    (["chat", "-p", "nobody", "-m", "hi"], "No persona called 'nobody'"),
    (["chat", "-p", "dialogpt-medium", "-m", "hi"], "models pull dialogpt-medium"),
    (["chat", "--conversation", "999", "-m", "hi"], "There is no conversation 999"),
    (["chat", "--device", "cuda", "-m", "hi"], "PyTorch sees no CUDA GPU"),
    (["models", "pull", "dialogpt-small"], "the Hugging Face Hub is not reachable"),
    (["models", "pull", "starter"], "not downloadable"),
    (["models", "remove", "starter"], "ships with the app"),
    (["models", "add", "/nonexistent/folder"], "is not a folder"),
])
def test_errors_are_messages_not_tracebacks(data_dir, tiny_persona_dir, capsys, argv, says):
    if "--device" in argv:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU; the error needs one without")
        argv = [*argv[:1], "-p", str(tiny_persona_dir), *argv[1:]]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_models_add_then_remove(data_dir, tiny_persona_dir, capsys):
    assert main(["models", "add", str(tiny_persona_dir), "--name", "Ann"]) == 0
    assert "Added Ann as 'ann'" in capsys.readouterr().out
    assert main(["chat", "-p", "ann", "-m", "hi"]) == 0
    assert main(["models", "add", str(tiny_persona_dir), "--name", "Ann"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["models", "remove", "ann"]) == 0
    assert not (data_dir / "personas" / "ann").exists()


def test_models_add_bare_checkpoint(data_dir, tiny_persona_dir, tmp_path, capsys):
    import shutil

    bare = tmp_path / "bare-gpt2"
    shutil.copytree(tiny_persona_dir, bare)
    (bare / "persona.json").unlink()
    assert main(["models", "add", str(bare)]) == 0
    from engine.models.registry import find_persona

    persona = find_persona("bare-gpt2")
    assert persona.prompt_format == "dialogpt"


def test_models_add_refuses_folders_that_could_not_load(data_dir, tiny_persona_dir, tmp_path,
                                                       capsys, monkeypatch):
    import json
    import shutil

    only_config = tmp_path / "only-config"
    only_config.mkdir()
    shutil.copy(tiny_persona_dir / "config.json", only_config)
    assert main(["models", "add", str(only_config)]) == 1
    assert "has no model weights" in capsys.readouterr().err
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_persona_dir / name, no_tokenizer)
    assert main(["models", "add", str(no_tokenizer)]) == 1
    assert "has no tokenizer files" in capsys.readouterr().err
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("tokenizer.json", "vocab.json"):
        if (tiny_persona_dir / name).is_file():
            shutil.copy(tiny_persona_dir / name, adapter)
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": "someone/not-downloaded"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    assert main(["models", "add", str(adapter)]) == 1
    assert "LoRA adapter on someone/not-downloaded, which is not on this computer" in \
        capsys.readouterr().err
    assert not (data_dir / "personas").exists() or not any((data_dir / "personas").iterdir())
    # An adapter whose base is a folder beside it is recorded with an absolute path.
    shutil.copytree(tiny_persona_dir, tmp_path / "base")
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"base_model_name_or_path": "../base"}))
    from engine.install.manager import add_folder

    assert add_folder(adapter, name="Adapted").base_model == str((tmp_path / "base").resolve())


def test_an_installed_persona_wins_over_a_folder_of_its_name_here(data_dir, tiny_persona_dir,
                                                                 tmp_path, monkeypatch):
    import shutil

    bare = tmp_path / "mymodel"
    shutil.copytree(tiny_persona_dir, bare)
    (bare / "persona.json").unlink()
    assert main(["models", "add", str(bare)]) == 0
    monkeypatch.chdir(tmp_path)  # the folder it was added from is "mymodel" here
    from engine.models.registry import find_persona

    assert find_persona("mymodel").folder == data_dir / "personas" / "mymodel"
    assert main(["chat", "-p", "mymodel", "-m", "hi"]) == 0


def test_import_engine_does_not_import_torch():
    code = ("import sys, engine, engine.cli.main, engine.chat, engine.models.registry; "
            "heavy = [m for m in ('torch', 'transformers', 'huggingface_hub') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


class ChatProcess:
    """``talk-to-transformers chat`` as a user runs it, typed into through a pipe."""

    def __init__(self, persona: Path, data: Path):
        env = {**os.environ, "TTT_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "chat", "-p", str(persona)], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.chunks: queue.Queue[bytes] = queue.Queue()
        self.out = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while chunk := os.read(self.proc.stdout.fileno(), 4096):
            self.chunks.put(chunk)

    def wait_for(self, predicate, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.out.decode(errors="replace")):
            exited = self.proc.poll() is not None
            if time.monotonic() > deadline or exited and self.chunks.empty():
                err = self.proc.stderr.read1() if exited else b""
                raise AssertionError(f"never saw it; output so far: {self.out!r} stderr: {err!r}")
            try:
                self.out += self.chunks.get(timeout=0.05)
            except queue.Empty:
                pass

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def replies(self) -> list[str]:
        text = self.out.decode(errors="replace")
        return [part.split("\nyou> ")[0] for part in text.split("bot> ")[1:]]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.reader.join(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture
def long_persona(tmp_path) -> Path:
    """A wider persona with long replies, so a reply streams for seconds (time to interrupt)."""
    return build_tiny_dialogpt(tmp_path / "long", n_positions=2048, n_layer=4, n_embd=512,
                               decoding={
        "do_sample": False, "max_new_tokens": 2000, "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0})


def test_kill_9_mid_reply_loses_nothing_that_was_shown(tmp_path):
    persona = build_tiny_dialogpt(tmp_path / "medium", n_positions=2048, n_layer=4, n_embd=512,
                                  decoding={"do_sample": False, "max_new_tokens": 300,
                                            "repetition_penalty": 1.0, "no_repeat_ngram_size": 0})
    data = tmp_path / "data"
    chat = ChatProcess(persona, data)
    try:
        chat.wait_for(lambda out: out.endswith("you> "))
        for message in ("first message", "second message"):
            chat.send(message)
            chat.wait_for(lambda out, m=message: out.count("you> ") >= 2 + (m == "second message"))
        chat.send("third message")
        chat.wait_for(lambda out: len(out.split("bot> ")[-1]) > 40 and out.count("bot> ") == 3)
        chat.proc.send_signal(signal.SIGKILL)
        chat.proc.wait(timeout=10)
        shown = chat.replies()
    finally:
        chat.close()
    store = ConversationStore(data / "conversations.sqlite3")
    turns = store.turns(store.latest_conversation())
    store.close()
    assert [t.text for t in turns if t.role == "user"] == [
        "first message", "second message", "third message"]
    replies = [t for t in turns if t.role == "assistant"]
    assert len(replies) == 3
    assert [r.status for r in replies] == ["done", "done", "cut"]
    assert replies[0].text == shown[0].strip() and replies[1].text == shown[1].strip()
    # Every character shown of the interrupted reply is in the store.
    assert replies[2].text.startswith(shown[2].strip())
    assert len(shown[2].strip()) > 30


def test_ctrl_c_stops_the_reply_not_the_session(tmp_path, long_persona):
    data = tmp_path / "data"
    chat = ChatProcess(long_persona, data)
    try:
        chat.wait_for(lambda out: out.endswith("you> "))
        chat.send("tell me everything")
        chat.wait_for(lambda out: "bot> " in out and len(out.split("bot> ")[-1]) > 20)
        chat.proc.send_signal(signal.SIGINT)
        chat.wait_for(lambda out: "[stopped]" in out and out.endswith("you> "))
        chat.send("/history")
        chat.wait_for(lambda out: "/history ID shows" in out)
        chat.send("/quit")
        assert chat.proc.wait(timeout=30) == 0
    finally:
        chat.close()
    store = ConversationStore(data / "conversations.sqlite3")
    turns = store.turns(store.latest_conversation())
    store.close()
    assert [(t.role, t.status) for t in turns] == [("user", "done"), ("assistant", "cut")], (
        chat.out, store.conversations())


def test_models_pull_from_a_hub_then_chat(tmp_path, tiny_persona_dir):
    """The real pull path (huggingface_hub over HTTP), against a local fake Hub."""
    import shutil

    from tests.fake_hub import FakeHub

    repo = tmp_path / "repo"
    shutil.copytree(tiny_persona_dir, repo)
    (repo / "persona.json").unlink()
    (repo / "flax_model.msgpack").write_bytes(b"not wanted")
    data, cache = tmp_path / "data", tmp_path / "hf-cache"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(TTT_DATA_DIR=str(data), HF_HUB_CACHE=str(cache), PYTHONUNBUFFERED="1")

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT,
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)

    with FakeHub("microsoft/DialoGPT-small", repo) as hub:
        pulled = cli("models", "pull", "dialogpt-small", HF_ENDPOINT=hub.url)
    assert pulled.returncode == 0, (pulled.stderr, hub.requests)
    assert "Ready: DialoGPT small" in pulled.stdout
    fetched = {r.rsplit("/", 1)[-1] for r in hub.requests if "/resolve/" in r}
    assert "model.safetensors" in fetched and "flax_model.msgpack" not in fetched
    # Now offline: the persona loads from the cache (the skipped Flax file is not missed), and
    # chat works.
    chatted = cli("chat", "-p", "dialogpt-small", "-m", "hello", HF_HUB_OFFLINE="1")
    assert chatted.returncode == 0, chatted.stderr
    assert "bot> " in chatted.stdout
    listed = cli("models", "list", HF_HUB_OFFLINE="1")
    assert "dialogpt-small" in listed.stdout and "ready" in listed.stdout
    removed = cli("models", "remove", "dialogpt-small", "--purge-cache", HF_HUB_OFFLINE="1")
    assert removed.returncode == 0, removed.stderr
    assert not list(cache.glob("models--microsoft--DialoGPT-small/snapshots/*/*"))


def test_serve_and_chat_remote_as_processes(tmp_path, tiny_persona_dir):
    """`serve` in one process, `chat --remote` in another, a token between them."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(TTT_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1",
               TTT_SERVE_TOKEN="tok-123")
    server = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "-p", str(tiny_persona_dir), "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "Serving" not in line:
            line = server.stdout.readline()
            assert line, server.stderr.read()
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        assert url.startswith("http://127.0.0.1:") and "bearer token required" in line
        chat = [sys.executable, "-m", "engine", "chat", "-p", str(tiny_persona_dir),
                "--remote", url, "-m", "hello there"]
        ok = subprocess.run(chat, cwd=ROOT, env={**env, "HF_TOKEN": "tok-123"},
                            capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0, ok.stderr
        assert "bot> " in ok.stdout and "error" not in ok.stderr
        denied = subprocess.run(chat, cwd=ROOT, env={**env, "HF_TOKEN": "wrong"},
                                capture_output=True, text=True, timeout=120)
        assert denied.returncode == 1
        assert "refused the token (HTTP 401)" in denied.stderr
        assert "Traceback" not in denied.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        server.stdout.close()
        server.stderr.close()


def test_the_recipe_persona_says_how_to_train_it(data_dir, capsys):
    assert main(["chat", "-p", "berkeley", "-m", "hi"]) == 1
    assert "train all --recipe berkeley" in capsys.readouterr().err
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "train it: talk-to-transformers train all --recipe berkeley" in out
    assert "not in this version" not in out
