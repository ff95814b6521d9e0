"""Where the app keeps its state on disk.

Everything lives under the platform's user data folder (``platformdirs``); the environment
variable ``TTT_DATA_DIR`` moves all of it, which the tests and portable installs use.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "talk-to-transformers"
DATA_DIR_ENV = "TTT_DATA_DIR"


def data_dir() -> Path:
    """Return the root folder of the app's state, creating it if needed."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        root = Path(override).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def personas_dir() -> Path:
    """Folder of the user's personas (pulled, imported or trained)."""
    path = data_dir() / "personas"
    path.mkdir(parents=True, exist_ok=True)
    return path


def conversations_db() -> Path:
    """SQLite file that holds every conversation."""
    return data_dir() / "conversations.sqlite3"


def settings_file() -> Path:
    """JSON settings file."""
    return data_dir() / "settings.json"


def cache_dir() -> Path:
    """Derived files that can be rebuilt (e.g. GGUF weights converted to safetensors)."""
    path = data_dir() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def resources_dir() -> Path:
    """The bundled ``resources`` folder (catalogue, built-in personas)."""
    return Path(__file__).resolve().parent.parent / "resources"
