"""The Qt binding must not leak references to None/True/False.

PySide6 6.12.0 on Python 3.11 drops one reference to a singleton per queued signal or
``processEvents`` call, and the app (which emits a signal per reply token) aborts after a few
thousand with "bool_dealloc" / "none_dealloc". pyproject.toml excludes it; this test catches a
binding with the same fault before users do.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QEventLoop, QObject, QTimer, Signal


class _Emitter(QObject):
    tick = Signal(object)


def test_signals_and_event_processing_keep_singleton_refcounts(qapp):
    emitter, received = _Emitter(), []
    emitter.tick.connect(received.append)
    before = [sys.getrefcount(x) for x in (None, True, False)]
    loop, count = QEventLoop(), [0]

    def step() -> None:
        count[0] += 1
        emitter.tick.emit(count[0])
        if count[0] >= 300:
            loop.quit()

    timer = QTimer()
    timer.timeout.connect(step)
    timer.start(0)
    loop.exec()
    timer.stop()
    for _ in range(300):
        qapp.processEvents()
    after = [sys.getrefcount(x) for x in (None, True, False)]
    assert len(received) == 300
    # A healthy binding drifts by a handful at most; the faulty one by ~300 or more.
    assert all(a - b > -50 for a, b in zip(after, before, strict=True)), (before, after)
