"""The project's errors: one small hierarchy, each with a stable code and a message for people.

Stages wrap the vendor exceptions they meet (``raise RemoteError(...) from err``) so the CLI and
the GUI can show ``message`` (and ``hint``) without a traceback. Cancellation is not an error and
never passes through here.
"""

from __future__ import annotations


class TalkError(Exception):
    """Base class. ``code`` is stable for programs; ``message`` and ``hint`` are for people."""

    code = "error"

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class ConfigError(TalkError):
    """A setting or settings file is invalid."""

    code = "config_invalid"


class MissingDependencyError(TalkError):
    """An optional package is not installed; the hint names the install command."""

    code = "dependency_missing"


class PersonaError(TalkError):
    """A persona folder or its ``persona.json`` is missing or invalid."""

    code = "persona_invalid"


class ModelNotAvailableError(TalkError):
    """Model files are not on disk and cannot be fetched (offline, not pulled, bad repo)."""

    code = "model_missing"


class ModelLoadError(TalkError):
    """Model files exist but could not be loaded (truncated, wrong format)."""

    code = "model_load_failed"


class ChatError(TalkError):
    """The chat stage failed."""

    code = "chat_failed"


class PromptTooLongError(ChatError):
    """The newest user turn alone does not fit the model's context."""

    code = "prompt_too_long"


class EchoReplyError(ChatError):
    """The persona only repeated the user's words, twice."""

    code = "reply_echo"


class RemoteError(ChatError):
    """The remote chat server failed; ``code`` tells how (auth, busy, timeout, cut...)."""

    code = "remote_failed"


class StoreError(TalkError):
    """The conversation store could not be opened or written."""

    code = "store_failed"
