"""Command-line interface: ``talk-to-transformers`` and ``python -m engine``."""
