"""A microphone level meter: a bar from -60 dBFS to 0, green, amber near clipping."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget

FLOOR_DB = -60.0  # silence on the meter


class LevelMeter(QWidget):
    """Shows the latest level; ``set_level(dbfs)`` from a signal, many times a second."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._level = FLOOR_DB
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName("Microphone level")
        self.setToolTip("Microphone level")

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        """Qt: a slim bar."""
        return QSize(160, 12)

    @property
    def level(self) -> float:
        """The level shown, dBFS."""
        return self._level

    def set_level(self, dbfs: float) -> None:
        """Show ``dbfs`` (clamped to the meter's range)."""
        self._level = max(FLOOR_DB, min(0.0, float(dbfs)))
        self.update()

    def reset(self) -> None:
        """Back to silence."""
        self.set_level(FLOOR_DB)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Qt: draw the bar in the palette's colours."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(self.palette().color(QPalette.ColorRole.Mid))
        painter.setBrush(self.palette().color(QPalette.ColorRole.Base))
        painter.drawRoundedRect(rect, 3, 3)
        fraction = (self._level - FLOOR_DB) / -FLOOR_DB
        if fraction > 0:
            colour = QColor("#d9534f") if self._level > -3 else (
                QColor("#f0ad4e") if self._level > -12 else QColor("#4caf50"))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawRoundedRect(rect.adjusted(1, 1, -(rect.width() - 2) * (1 - fraction) - 1,
                                                  -1), 2, 2)
        painter.end()
