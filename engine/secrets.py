"""Secrets (the Hugging Face token) live in the OS keyring, or come from the environment.

They are never written to settings files or logs. Where no keyring backend exists (a headless
server), ``HF_TOKEN`` is the fallback and the error says so.
"""

from __future__ import annotations

import os
from types import ModuleType

from engine.errors import ConfigError

SERVICE = "talk-to-transformers"
HF_TOKEN_KEY = "hf_token"


def usable_keyring() -> ModuleType | None:
    """The ``keyring`` module when an OS keyring backend is there to use, else None.

    None when keyring is not installed or only its "fail" backend is left (a headless server);
    callers then fall back to ``HF_TOKEN`` or say that nothing can be stored.
    """
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return None
    return keyring


def hf_token() -> str | None:
    """The Hugging Face token: the keyring's first, then ``HF_TOKEN``; None if neither."""
    kr = usable_keyring()
    if kr is not None:
        try:
            token = kr.get_password(SERVICE, HF_TOKEN_KEY)
        except Exception:  # a locked or broken keyring must not stop the app
            token = None
        if token:
            return token
    return os.environ.get("HF_TOKEN") or None


def store_hf_token(token: str) -> None:
    """Save the token in the OS keyring."""
    kr = usable_keyring()
    if kr is None:
        raise ConfigError(
            "No OS keyring is available to store the token.",
            hint="Set the HF_TOKEN environment variable instead.",
            code="keyring_unavailable",
        )
    kr.set_password(SERVICE, HF_TOKEN_KEY, token)


def clear_hf_token() -> bool:
    """Remove the token from the keyring; True if one was there."""
    kr = usable_keyring()
    if kr is None:
        return False
    try:
        kr.delete_password(SERVICE, HF_TOKEN_KEY)
    except Exception:  # keyring raises PasswordDeleteError when absent
        return False
    return True
