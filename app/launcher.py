"""The bundle's single executable: the window, or with a command the terminal interface.

A PyInstaller bundle has one program, ``talk-to-transformers``: with no command (or only the
window's flags, such as ``--self-check``) it opens the window; with a command (``chat``,
``talk``, ``models``, ``train`` …) it is the command line. Installs from pip keep the two
separate entry points, which both still work. Whether this is the bundle, and how the
trainer is started from it, is ``app.bundle``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# The window's own flags; any other argument (a command, or the command line's -v/--version)
# belongs to the command line.
WINDOW_FLAGS = {"--self-check", "--report-startup", "--quit-when-ready", "-h", "--help"}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the window or the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg not in WINDOW_FLAGS for arg in args):
        from app.cli import main as cli_main

        return cli_main(args)
    from app.main import main as window_main

    return window_main(args)
