"""How the window gets its engine parts, one method per part, all from the settings.

The controller calls these on worker threads. Tests pass a subclass that swaps one part (a file
standing in for the microphone, a recording player) and keeps the real code for the rest.
"""

from __future__ import annotations

from typing import Any

from engine.settings import Settings


class EngineBackends:
    """The real parts: local or remote chat, Whisper, Pocket TTS, the sound devices."""

    def persona(self, ref: str | None) -> Any:
        """The Persona called ``ref`` (the starter when None)."""
        from engine.models.registry import find_persona

        return find_persona(ref)

    def chat(self, persona: Any, settings: Settings) -> Any:
        """A loaded chat backend for ``persona`` (slow: loads weights)."""
        from transformers.utils import logging as hf_logging

        from engine.chat import open_backend

        hf_logging.disable_progress_bar()  # the window shows its own; no bars on stderr
        remote = settings.remote_url if settings.chat_backend == "remote" else None
        return open_backend(persona, remote=remote, device=settings.device,
                            api=settings.remote_api, model=settings.remote_model or None)

    def recognizer(self, settings: Settings) -> Any:
        """A loaded speech recogniser."""
        from engine.asr import open_recognizer

        options: dict[str, Any] = {"device": settings.device,
                                   "language": None if settings.language == "auto"
                                   else settings.language}
        if settings.asr_model != "bundled":
            options["model"] = settings.asr_model
        return open_recognizer(settings.asr_backend, **options)

    def voice_output(self, settings: Settings) -> tuple[Any, Any]:
        """(tts, started player) for spoken replies.

        Raises:
            TalkError: the voice model is not pulled, or there is no speaker.

        """
        from engine.audio.player import Player
        from engine.tts.pocket import PocketTTS

        tts = PocketTTS(settings.tts_model, device=settings.device)
        player = Player(settings.output_device)
        player.start()
        return tts, player

    def voice(self, name: str | None) -> Any:
        """The voice ``name``: enrolled, or built-in (``builtin:alba``); None: the default."""
        from engine.tts.builtin import find_any_voice

        return find_any_voice(name)

    def microphone(self, settings: Settings) -> Any:
        """An unopened microphone (``start`` opens it)."""
        from engine.audio.capture import Microphone

        return Microphone(settings.input_device)
