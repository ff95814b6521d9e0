"""Secrets live only in the OS keyring, and models load only as safetensors or weights-only.

The end-to-end sweep stores distinctive secrets the way a person does (``token set``, the
settings dialog, ``train reddit-login``), uses them against local fakes (a TGI server that wants
the bearer token, a fake Reddit, a fake Hub) with DEBUG logging on, then reads every byte under
the test's folder (data folder, SQLite database, Hub cache, run folders, log files) and every
captured output, looking for each secret plain, URL-encoded and base64-encoded (basic auth).
"""

from __future__ import annotations

import ast
import base64
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from secrets import token_hex, token_urlsafe
from urllib.parse import quote, quote_plus, urlsplit

import keyring
import pytest
from keyring.backends import fail

from engine.cli.main import main as engine_main
from engine.secrets import HF_TOKEN_KEY, SERVICE
from engine.store import ConversationStore
from tests import fake_hub, fake_reddit
from tests.http_serving import serving
from tests.keyrings import MemoryKeyring
from training.cli import main as train_main

ROOT = Path(__file__).resolve().parent.parent
# Loggers that may not propagate to the root logger (transformers' does not, by default).
LOGGERS = ("engine", "training", "app", "huggingface_hub", "httpx", "httpx2", "httpcore",
           "httpcore2", "urllib3", "requests", "praw", "prawcore", "transformers", "keyring")


# -- the sweep ----------------------------------------------------------------------------------
def _base64_forms(raw: bytes) -> Iterator[bytes]:
    """The base64 text of ``raw`` wherever it sits in a longer value (all three alignments).

    Only whole 3-byte groups that lie inside ``raw`` are kept, so the neighbours do not matter:
    ``Basic base64(client_id:client_secret)`` contains one of these for each of the two.
    """
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        core = encoded[4 if offset else 0: 4 * ((offset + len(raw)) // 3)]
        yield core
        yield core.replace(b"+", b"-").replace(b"/", b"_")  # URL-safe alphabet


def secret_forms(secrets: dict[str, str]) -> dict[bytes, str]:
    """Byte strings to look for, each with what it is ("reddit password (base64)")."""
    forms: dict[bytes, str] = {}
    for label, value in secrets.items():
        raw = value.encode()
        forms[raw] = label
        forms.setdefault(quote(value, safe="").encode(), f"{label} (URL-encoded)")
        forms.setdefault(quote_plus(value).encode(), f"{label} (form-encoded)")
        for form in _base64_forms(raw):
            forms.setdefault(form, f"{label} (base64)")
    return forms


def find_leaks(secrets: dict[str, str], roots: Iterable[Path] = (),
               outputs: dict[str, str | bytes] | None = None) -> list[str]:
    """Every file under ``roots`` and every named output that contains a secret, in any form.

    Returns lines such as ``/tmp/.../settings.json: hf token (base64)``; empty when clean.
    """
    forms = secret_forms(secrets)
    found = []

    def check(name: str, data: bytes) -> None:
        found.extend(f"{name}: {label}" for form, label in forms.items() if form in data)

    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and not path.is_symlink():
                check(str(path), path.read_bytes())
    for name, text in (outputs or {}).items():
        check(name, text.encode() if isinstance(text, str) else text)
    return found


def test_the_sweep_finds_a_planted_secret_and_names_the_file(tmp_path):
    secrets = {"hf token": "hf_" + token_hex(16), "reddit client secret": token_urlsafe(24)}
    clean = tmp_path / "data"
    (clean / "personas" / "p").mkdir(parents=True)
    (clean / "settings.json").write_text('{"persona": "starter"}')
    (clean / "personas" / "p" / "persona.json").write_text("{}")
    assert find_leaks(secrets, [clean], {"stdout": "hello"}) == []

    (clean / "personas" / "p" / "notes.txt").write_text(f"token={secrets['hf token']}\n")
    basic = base64.b64encode(f"some-id:{secrets['reddit client secret']}".encode()).decode()
    leaks = find_leaks(secrets, [clean], {"debug.log": f"Authorization: Basic {basic}"})
    assert leaks == [f"{clean / 'personas' / 'p' / 'notes.txt'}: hf token",
                     "debug.log: reddit client secret (base64)"]


# -- helpers for the end-to-end run -------------------------------------------------------------
@contextmanager
def debug_log(path: Path) -> Iterator[None]:
    """Every logger, libraries' included, at DEBUG into ``path`` (as a verbose user would run)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    saved = [(root, root.level, root.propagate)]
    saved += [(lg, lg.level, lg.propagate) for lg in map(logging.getLogger, LOGGERS)]
    root.addHandler(handler)
    for logger, _, _ in saved:
        logger.setLevel(logging.DEBUG)
        logger.propagate = True
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for logger, level, propagate in saved:
            logger.setLevel(level)
            logger.propagate = propagate


class _RecordingRedditHandler(fake_reddit._Handler):
    def _serve(self, form):
        if urlsplit(self.path).path == "/api/v1/access_token":
            self.server.token_forms.append(form)
        super()._serve(form)


class _RecordingHubHandler(fake_hub._Handler):
    def _serve(self, body):
        self.server.authorizations.append((self.path, self.headers.get("Authorization")))
        super()._serve(body)


class _TTY:
    """Typed answers for ``input()``, on a stdin that says it is a terminal."""

    def __init__(self, *lines: str):
        self.lines = list(lines)

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        return self.lines.pop(0) + "\n"


@pytest.fixture
def isolated(tmp_path, data_dir, monkeypatch):
    """An in-memory keyring; no credentials from the environment, praw.ini or the real home."""
    import praw.config

    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    for var in ("HF_TOKEN", "REDDIT_CLIENT_ID", "REDDIT_CLIENT_SECRET", "REDDIT_USER_AGENT",
                "REDDIT_USERNAME", "REDDIT_PASSWORD", "praw_client_id", "praw_client_secret",
                "praw_site", "TTT_REDDIT_URL"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "config").mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(praw.config.Config, "CONFIG", None)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    yield backend
    keyring.set_keyring(previous)


def _save_token_in_the_settings_dialog(qtbot, hf: str, url: str) -> None:
    from PySide6.QtCore import Qt

    from app.dialogs.settings_dialog import SettingsDialog
    from app.workers import WorkerPool

    dialog = SettingsDialog(workers=WorkerPool())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: not dialog.workers.running, timeout=15000)
    dialog.chat_remote_radio.setChecked(True)
    dialog.remote_url_edit.setText(url)
    qtbot.keyClicks(dialog.token_edit, hf)
    qtbot.mouseClick(dialog.save_token_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.token_status_label.text()
                    == "A token is stored in the OS keyring.", timeout=15000)
    dialog.accept()  # validates and writes settings.json
    assert dialog.result_settings is not None, dialog.banner.plain_text()
    assert dialog.workers.pool.waitForDone(10000)


# -- the end-to-end sweep -----------------------------------------------------------------------
def test_secrets_stay_in_the_keyring_through_use_logs_and_files(
        isolated, tmp_path, data_dir, tiny_chat, tiny_persona_dir, monkeypatch, capfd, qtbot):
    import huggingface_hub.constants

    from engine.serve import make_server
    from training.credentials import store_reddit_credentials

    hf = "hf_" + token_hex(16)
    reddit = {"client_id": "cid" + token_hex(8), "client_secret": token_urlsafe(24),
              "password": f"pw-{token_hex(8)}/&+!"}  # URL and form encoding change these
    access = "at-" + token_hex(12)  # the bearer Reddit hands out for a session
    secrets = {"hf token": hf, "reddit client id": reddit["client_id"],
               "reddit client secret": reddit["client_secret"],
               "reddit password": reddit["password"], "reddit access token": access}
    monkeypatch.setattr(fake_reddit, "ACCESS_TOKEN", access)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # localhost only
    monkeypatch.setattr(huggingface_hub.constants, "HF_DEBUG", True)  # curl-style request logs
    # huggingface_hub fetches an "agent harness" list from the Hub once a day, even for a
    # private server's InferenceClient: point it at a closed port so nothing leaves the machine.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    logs = tmp_path / "logs"
    logs.mkdir()
    outputs: dict[str, str | bytes] = {}

    with debug_log(logs / "debug.log"), \
            serving(make_server(tiny_chat, port=0, token=hf)) as tgi, \
            serving(make_server(tiny_chat, port=0, token="another-token")) as other_tgi:
        # 1. Store: the token CLI, the settings dialog, the Reddit login, the library call.
        monkeypatch.setattr("getpass.getpass", lambda prompt="": hf)
        assert engine_main(["token", "set"]) == 0
        assert engine_main(["token", "status"]) == 0
        _save_token_in_the_settings_dialog(qtbot, hf, tgi)
        monkeypatch.setattr("sys.stdin", _TTY(reddit["client_id"], ""))
        monkeypatch.setattr("getpass.getpass", lambda prompt="": reddit["client_secret"])
        assert train_main(["reddit-login"]) == 0
        assert isolated.store[(SERVICE, "reddit_client_secret")] == reddit["client_secret"]
        store_reddit_credentials(reddit["client_id"], reddit["client_secret"],
                                 username="privacy_bot", password=reddit["password"])
        assert isolated.store[(SERVICE, HF_TOKEN_KEY)] == hf

        # 2. Use: remote chat (verbose), a scrape, and both with credentials that are refused.
        #    A second connection keeps the database's -wal file (the last close folds it in).
        wal_keeper = ConversationStore(data_dir / "conversations.sqlite3")
        assert engine_main(["-v", "chat", "--remote", tgi, "-p", str(tiny_persona_dir),
                            "-m", "hello there how are you"]) == 0
        assert engine_main(["-v", "chat", "--remote", other_tgi, "-p", str(tiny_persona_dir),
                            "-m", "hello again"]) == 1
        with fake_reddit.FakeReddit(client_id=reddit["client_id"],
                                    client_secret=reddit["client_secret"]) as server:
            server.RequestHandlerClass = _RecordingRedditHandler
            server.token_forms = []
            monkeypatch.setenv("TTT_REDDIT_URL", server.url)
            assert train_main(["scrape", "--subreddit", "berkeley", "--run", "privacy",
                               "--limit", "3"]) == 0
        assert server.token_forms[0]["password"] == [reddit["password"]]  # really used
        with fake_reddit.FakeReddit(client_secret="not-the-one") as refusing:
            monkeypatch.setenv("TTT_REDDIT_URL", refusing.url)
            assert train_main(["scrape", "--subreddit", "berkeley", "--run", "denied"]) == 1
    out = capfd.readouterr()
    outputs.update({"in-process stdout": out.out, "in-process stderr": out.err})
    assert "bot> " in out.out and "refused the token" in out.err
    assert "rejected the app's credentials" in out.err

    # 3. A pull from a fake Hub as a separate process (-v, HF_DEBUG), whose keyring holds the
    #    token (tests.keyrings.EnvKeyring: the secret reaches it through the environment, not a
    #    file) and which has no HF_TOKEN: the token the Hub sees came from the keyring.
    repo = tmp_path / "repo"
    shutil.copytree(tiny_persona_dir, repo)
    (repo / "persona.json").unlink()
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(TTT_DATA_DIR=str(data_dir), HF_HOME=str(tmp_path / "hf-home"),
               HF_DEBUG="1", HF_HUB_VERBOSITY="debug", PYTHONPATH=str(ROOT),
               PYTHON_KEYRING_BACKEND="tests.keyrings.EnvKeyring",
               TEST_KEYRING=json.dumps({f"{SERVICE}/{HF_TOKEN_KEY}": hf}))
    env.pop("HF_TOKEN", None)
    with fake_hub.FakeHub("microsoft/DialoGPT-small", repo) as hub:
        hub.RequestHandlerClass = _RecordingHubHandler
        hub.authorizations = []
        pulled = subprocess.run(
            [sys.executable, "-m", "engine", "-v", "models", "pull", "dialogpt-small"],
            cwd=tmp_path / "cwd", env={**env, "HF_ENDPOINT": hub.url}, capture_output=True,
            timeout=120)
    assert pulled.returncode == 0, pulled.stderr.decode(errors="replace")
    repo_requests = [a for a in hub.authorizations if "DialoGPT-small" in a[0]]
    assert any("/resolve/" in path for path, _ in repo_requests)
    assert {auth for _, auth in repo_requests} == {f"Bearer {hf}"}  # the token was used
    outputs.update({"pull stdout": pulled.stdout, "pull stderr": pulled.stderr})

    # 4. Sweep. The files the run must have made are there, so the sweep read them.
    made = ["settings.json", "conversations.sqlite3", "conversations.sqlite3-wal",
            "training/privacy/raw/threads.jsonl",
            "training/privacy/raw/scrape_state.json", "personas/dialogpt-small/persona.json"]
    assert [m for m in made if not (data_dir / m).is_file()] == []
    assert (logs / "debug.log").stat().st_size > 10_000
    assert list((tmp_path / "hf-home").rglob("model.safetensors"))
    leaks = find_leaks(secrets, [tmp_path, tiny_persona_dir], outputs)
    wal_keeper.close()
    assert leaks == [], "secrets leaked:\n" + "\n".join(leaks)


# -- no keyring ---------------------------------------------------------------------------------
def test_without_a_keyring_storing_says_use_the_environment_and_writes_nothing(
        tmp_path, monkeypatch, capfd):
    hf, secret = "hf_" + token_hex(16), token_urlsafe(24)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"), XDG_CACHE_HOME=str(home / ".cache"),
               TTT_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT),
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    home.mkdir()
    # A new session has no terminal, so getpass reads the pipe (as a pasted token).
    stored = subprocess.run([sys.executable, "-m", "engine", "token", "set"], cwd=home,
                            env=env, input=hf + "\n", capture_output=True, text=True,
                            timeout=60, start_new_session=True)
    assert stored.returncode == 1
    assert "No OS keyring is available" in stored.stderr
    assert "Set the HF_TOKEN environment variable instead." in stored.stderr

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        monkeypatch.setattr("sys.stdin", _TTY("some-client-id", ""))
        monkeypatch.setattr("getpass.getpass", lambda prompt="": secret)
        monkeypatch.setenv("TTT_DATA_DIR", str(tmp_path / "data"))
        assert train_main(["reddit-login"]) == 1
    finally:
        keyring.set_keyring(previous)
    out = capfd.readouterr()
    assert "REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET" in out.err
    outputs = {"token set stdout": stored.stdout, "token set stderr": stored.stderr,
               "reddit-login stdout": out.out, "reddit-login stderr": out.err}
    leaks = find_leaks({"hf token": hf, "reddit client secret": secret}, [tmp_path], outputs)
    assert leaks == [], "secrets leaked:\n" + "\n".join(leaks)


# -- loading code -------------------------------------------------------------------------------
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib"}
# Keyword (or dict key) -> the only literal value allowed wherever it is written.
REQUIRED = {"trust_remote_code": False, "weights_only": True, "allow_pickle": False,
            "use_safetensors": True}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def unsafe_loading(source: str, name: str = "<source>") -> list[str]:
    """Where ``source`` could run code from a model file: pickle, unsafe flags, torch.load."""
    found: list[tuple[int, str]] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append((node.lineno, f"{name}:{node.lineno}: {what}"))

    def check_value(node: ast.AST, key: str, value: ast.AST) -> None:
        wanted = REQUIRED[key]
        if not (isinstance(value, ast.Constant) and value.value is wanted):
            flag(node, f"{key} must be the literal {wanted}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                node.module or ""]
            for module in modules:
                if module.split(".")[0] in PICKLE_MODULES:
                    flag(node, f"imports {module}")
        elif isinstance(node, ast.Call):
            called = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            for key in REQUIRED.keys() & keywords.keys():
                check_value(node, key, keywords[key])
            if called in ("torch.load", "torch.serialization.load") and "weights_only" not in (
                    keywords):
                flag(node, "torch.load without weights_only=True")
            if called == "torch.jit.load":
                flag(node, "torch.jit.load runs code from the file")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in REQUIRED:
                    check_value(node, key.value, value)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if (isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant)
                        and target.slice.value in REQUIRED):
                    check_value(node, target.slice.value, node.value)
    return [text for _, text in sorted(found)]


def test_the_loading_check_catches_each_unsafe_pattern():
    bad = """
import pickle
from dill import loads
torch.load(path)
torch.load(path, weights_only=False)
AutoModel.from_pretrained(repo, trust_remote_code=True)
AutoModel.from_pretrained(repo, trust_remote_code=allowed)
kwargs = {"trust_remote_code": flag, "use_safetensors": False}
kwargs["trust_remote_code"] = True
np.load(path, allow_pickle=True)
torch.jit.load(path)
"""
    assert [line.split(": ", 1)[0] for line in unsafe_loading(bad, "bad")] == [
        f"bad:{n}" for n in (2, 3, 4, 5, 6, 7, 8, 8, 9, 10, 11)]
    good = """
torch.load(path, map_location="cpu", weights_only=True)
AutoModel.from_pretrained(repo, trust_remote_code=False, **kwargs)
kwargs = {"dtype": dtype, "trust_remote_code": False}
np.load(path)
"""
    assert unsafe_loading(good) == []


def test_no_pickle_no_remote_code_in_engine_training_and_app():
    found = []
    for package in ("engine", "training", "app"):
        for path in sorted((ROOT / package).rglob("*.py")):
            found += unsafe_loading(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == [], "\n".join(found)
