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

    from tests.keyrings import MemoryKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    yield data_dir
    keyring.set_keyring(previous)
