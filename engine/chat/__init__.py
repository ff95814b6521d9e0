"""Chat backends: ``reply(history)`` and ``stream_reply(history)``, local or remote."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.chat.types import ChatModel, Turn

if TYPE_CHECKING:
    from engine.models.persona import Persona

__all__ = ["ChatModel", "Turn", "open_backend"]


def open_backend(persona: Persona, *, remote: str | None = None, device: str = "auto",
                 token: str | None = None, api: str = "auto", model: str | None = None,
                 **overrides: Any) -> ChatModel:
    """The local backend for ``persona``, or the remote one when ``remote`` is a server URL.

    ``api`` (``auto``, ``openai``, ``tgi``) and ``model`` (the name to ask for; None: the
    server's) apply to a remote server only. ``overrides`` replace the persona's decoding
    settings (``None`` values are ignored).
    """
    if remote:
        from engine.chat.remote import RemoteChat
        from engine.secrets import hf_token

        return RemoteChat.connect(remote, persona, api=api, model=model or None,
                                  token=token or hf_token(), **overrides)
    from engine.chat.local import LocalChat

    return LocalChat.load(persona, device=device, **overrides)
