"""Fixtures of the bad-input matrix: one context per case, GUI hygiene for the window cases."""

from __future__ import annotations

import sys

import pytest

from tests.reliability.matrix import Ctx


@pytest.fixture
def ctx(request, tmp_path, data_dir, monkeypatch, capsys) -> Ctx:
    """A private data folder and tmp folder; other fixtures on demand."""
    return Ctx(request, tmp_path, data_dir, monkeypatch, capsys)


@pytest.fixture
def gui(ctx, qtbot):
    """For window cases: an in-memory keyring; after the case, no GUI worker left running."""
    import keyring

    from tests.keyrings import MemoryKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    yield qtbot
    keyring.set_keyring(previous)
    if "app.workers" in sys.modules:
        from app.workers import WorkerPool

        busy = [[w.name for w in pool.running] for pool in list(WorkerPool.instances)
                if not pool.pool.waitForDone(10000)]
        assert not busy, f"GUI workers left running: {busy}"
