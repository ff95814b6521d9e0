"""``python -m training``: the same as ``talk-to-transformers train``."""

from training.cli import main

raise SystemExit(main())
