"""Whether this is the PyInstaller bundle, and how to start the trainer from it or from pip.

A bundle has one program, ``talk-to-transformers`` (see ``app.launcher``): ``sys.executable``
is that program, not Python, so the trainer is started as its ``train`` command rather than
with ``-m training``. This module imports nothing of the app, so any part of it can ask.
"""

from __future__ import annotations

import sys


def frozen() -> bool:
    """Whether this is a PyInstaller bundle (``sys.executable`` is the app, not Python)."""
    return bool(getattr(sys, "frozen", False))


def training_command_prefix() -> list[str]:
    """Arguments after ``sys.executable`` that start the trainer (``… all --name …``)."""
    return ["train"] if frozen() else ["-m", "training"]
