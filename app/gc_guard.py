"""Collect Python's cyclic garbage on the GUI thread only.

Python runs its cycle collector in whichever thread happens to allocate when a threshold is
crossed — often a worker thread loading a model. If that collection frees a cycle holding a Qt
widget, the widget's C++ destructor runs off the GUI thread and the process segfaults (seen in
CI: "Fatal Python error: Segmentation fault … Garbage-collecting" in a worker). So automatic
collection is switched off and a timer on the GUI thread collects instead, generation by
generation, as the thresholds would have.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class GuiThreadCollector(QObject):
    """Disables automatic GC and collects from a GUI-thread timer (``interval_ms``)."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500):
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds."""
        counts = gc.get_count()
        if counts[0] > self.threshold[0]:
            generation = 0
            if counts[1] > self.threshold[1]:
                generation = 2 if counts[2] > self.threshold[2] else 1
            gc.collect(generation)

    def stop(self) -> None:
        """Give collection back to Python."""
        self.timer.stop()
        gc.enable()
