"""Talk To Transformers engine: everything that runs a conversation, without Qt.

Importing this package is cheap on purpose: torch, transformers and huggingface_hub are
imported inside the modules that use them, so the CLI and the window start fast.
"""

__version__ = "0.1.0"
