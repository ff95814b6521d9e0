"""Talk To Transformers engine: everything that runs a conversation, without Qt.

Importing this package is cheap on purpose: torch, transformers and huggingface_hub are
imported inside the modules that use them, so the CLI and the window start fast.
"""

import os

# No telemetry: with it on, huggingface_hub (2.4) fetches a registry from huggingface.co to fill
# in its user agent on the first request, even one to the user's own TGI server. Set before any
# module imports huggingface_hub (which reads it once); a user's own setting wins.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
