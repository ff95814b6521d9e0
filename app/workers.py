"""Long work off the GUI thread: workers with started/finished/failed/progress signals.

A worker's function runs on a ``QThreadPool`` thread and reports only through signals, which Qt
delivers on the GUI thread (queued connections), so no widget is ever touched from a worker.
``WorkerPool.shutdown`` cancels and waits, which is how the window closes without a hang.
"""

from __future__ import annotations

import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from engine.cancel import CancelToken
from engine.errors import TalkError


class WorkerSignals(QObject):
    """What a worker reports; every signal arrives on the GUI thread."""

    started = Signal()
    progress = Signal(object)  # whatever the function passes to its ``progress`` callback
    finished = Signal(object)  # the function's return value
    failed = Signal(object)  # a TalkError (unexpected exceptions are wrapped in one)
    done = Signal()  # after finished or failed, always


class Worker(QRunnable):
    """Runs ``fn(*args, progress=..., cancel=..., **kwargs)`` on a pool thread.

    ``fn`` gets ``progress`` (a callable) and ``cancel`` (a CancelToken) only if it accepts them.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "work",
                 with_progress: bool = False, with_cancel: bool = False, **kwargs: Any):
        super().__init__()
        self.setAutoDelete(False)  # the pool keeps a reference until it is done
        self.fn, self.args, self.kwargs, self.name = fn, args, kwargs, name
        self.signals = WorkerSignals()
        self.cancel = CancelToken()
        if with_progress:
            self.kwargs["progress"] = self.signals.progress.emit
        if with_cancel:
            self.kwargs["cancel"] = self.cancel
        self.finished_event = threading.Event()

    def run(self) -> None:
        """Qt calls this on a pool thread."""
        self.signals.started.emit()
        try:
            result = self.fn(*self.args, **self.kwargs)
        except TalkError as err:
            self.signals.failed.emit(err)
        except Exception as err:  # never a traceback dialog: a message with the cause
            detail = traceback.format_exception_only(type(err), err)[-1].strip()
            self.signals.failed.emit(TalkError(f"{self.name.capitalize()} failed: {detail}",
                                               code="internal_error"))
        else:
            self.signals.finished.emit(result)
        finally:
            self.finished_event.set()
            self.signals.done.emit()


class WorkerPool(QObject):
    """Starts workers and remembers the running ones so they can be cancelled and awaited."""

    instances: weakref.WeakSet[WorkerPool] = weakref.WeakSet()  # every pool, for shutdown checks

    def __init__(self, parent: QObject | None = None, max_threads: int = 4):
        super().__init__(parent)
        WorkerPool.instances.add(self)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self.running: set[Worker] = set()

    def start(self, worker: Worker) -> Worker:
        """Run ``worker``; it is forgotten when done."""
        self._track(worker)
        self.pool.start(worker)
        return worker

    def _track(self, worker: Worker) -> None:
        if worker in self.running:
            return
        self.running.add(worker)
        # Connected before any caller's slot: queued slots run one event each, so a caller's
        # "done" handler (or a test waiting on it) then already sees the worker gone.
        worker.signals.done.connect(lambda w=worker: self.running.discard(w))

    def run(self, fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[TalkError], None] | None = None,
            on_progress: Callable[[Any], None] | None = None,
            on_finally: Callable[[], None] | None = None, **kwargs: Any) -> Worker:
        """Shorthand: a worker for ``fn`` with its callbacks, connected before it starts.

        (Connecting to the returned worker's signals afterwards can miss a quick job's.)
        """
        worker = Worker(fn, *args, **kwargs)
        self._track(worker)
        for signal, slot in ((worker.signals.finished, on_done), (worker.signals.failed, on_error),
                             (worker.signals.progress, on_progress),
                             (worker.signals.done, on_finally)):
            if slot is not None:
                signal.connect(slot)
        return self.start(worker)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel every running worker and wait for the threads; True if all ended in time."""
        for worker in list(self.running):
            worker.cancel.cancel()
        return self.pool.waitForDone(timeout_ms)
