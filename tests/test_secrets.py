"""The Hugging Face token: keyring first, then HF_TOKEN; never printed."""

from __future__ import annotations

import keyring
import pytest

from engine import secrets
from engine.cli.main import main
from engine.errors import ConfigError
from tests.keyrings import MemoryKeyring


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_token_set_status_clear(memory_keyring, monkeypatch, capsys, data_dir):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("getpass.getpass", lambda prompt: "hf_secret_value")
    assert main(["token", "set"]) == 0
    assert memory_keyring.store[("talk-to-transformers", "hf_token")] == "hf_secret_value"
    assert secrets.hf_token() == "hf_secret_value"
    assert main(["token", "status"]) == 0
    assert main(["token", "clear"]) == 0
    assert secrets.hf_token() is None
    out = capsys.readouterr()
    assert "hf_secret_value" not in out.out + out.err
    assert "from the OS keyring" in out.out and "Token removed" in out.out
    # Nothing about the token was written to the data folder.
    for path in data_dir.rglob("*") if data_dir.exists() else []:
        if path.is_file():
            assert b"hf_secret_value" not in path.read_bytes()


def test_env_token_is_the_fallback(memory_keyring, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "from-env")
    assert secrets.hf_token() == "from-env"
    memory_keyring.set_password("talk-to-transformers", "hf_token", "from-keyring")
    assert secrets.hf_token() == "from-keyring"


def test_no_keyring_backend_gives_a_clear_message(monkeypatch):
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        with pytest.raises(ConfigError) as caught:
            secrets.store_hf_token("x")
        assert "HF_TOKEN" in caught.value.hint
    finally:
        keyring.set_keyring(previous)
