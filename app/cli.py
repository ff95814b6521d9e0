"""The ``talk-to-transformers`` launcher: ``train …`` goes to the trainer, the rest to the engine.

The engine never imports the training package (an import contract), so the one command that
reaches both is dispatched here. Nothing here imports Qt.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "train":
        from training.cli import main as train_main

        return train_main(args[1:])
    from engine.cli.main import main as engine_main

    return engine_main(args)
