"""GUI test fixtures: every worker pool is idle after each test, settings are private."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_running_workers(qapp):
    """Fail a test that leaves a GUI worker thread running."""
    yield
    from app.workers import WorkerPool

    busy = []
    for pool in list(WorkerPool.instances):
        if not pool.pool.waitForDone(10000):
            busy.append([w.name for w in pool.running])
    assert not busy, f"GUI workers left running: {busy}"


@pytest.fixture
def app_data(data_dir, monkeypatch):
    """A fresh data folder and an in-memory keyring, so nothing touches the real ones."""
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        priority = 1
        store: dict[tuple[str, str], str] = {}

        def get_password(self, service, username):
            return self.store.get((service, username))

        def set_password(self, service, username, password):
            self.store[(service, username)] = password

        def delete_password(self, service, username):
            if (service, username) not in self.store:
                raise keyring.errors.PasswordDeleteError(username)
            del self.store[(service, username)]

    MemoryKeyring.store = {}
    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    yield data_dir
    keyring.set_keyring(previous)
