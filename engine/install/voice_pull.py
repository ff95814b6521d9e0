"""Pulling a Pocket TTS voice model: the files its config names, one by one, from two repos.

The voice-cloning weights (``kyutai/pocket-tts``) are gated: the Hub answers 401/403 until the
person accepts the model's terms and the app has their token. Then the open weights without
cloning are pulled instead, with the built-in voices, and the person is told exactly what to do
to get cloning. The tokenizer and built-in voices come from the open repo either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ModelNotAvailableError
from engine.tts.runtime import HubFile, model_files


@dataclass
class VoicePull:
    """What a voice-model pull got."""

    cloning: bool = False  # the gated cloning weights are on disk
    voices: list[str] = field(default_factory=list)  # built-in voices on disk
    note: str | None = None  # what the person should know (e.g. how to get cloning)


def _is_gated(err: Exception) -> bool:
    """A gated repo's refusal (not an invalid token: that is a plain 401, said elsewhere)."""
    from huggingface_hub import errors as hub_errors

    if isinstance(err, hub_errors.GatedRepoError):
        return True
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None) == 403


def gated_note(hub_file: HubFile, token: str | None) -> str:
    """Plain words for a 401/403 on the cloning weights."""
    from engine.tts.pocket import cloning_hint

    why = ("no Hugging Face token is saved" if token is None else
           "the saved token has not been granted access (accept the terms with that account)")
    return (f"Voice cloning is not available yet: {hub_file.repo_id} is gated and {why}. "
            + cloning_hint())


def pull_voice_model(config: str, *, token: str | None, tqdm_class: type,
                     check: Callable[[], None], progress: Callable[[str], None]) -> VoicePull:
    """Download what the pocket-tts model ``config`` needs into the Hub cache.

    Args:
        config: The runtime's config name (or YAML path) from the catalogue.
        token: The Hugging Face token, or None.
        tqdm_class: Progress bars for huggingface_hub (byte counts, cancel checks).
        check: Raises when the person cancelled.
        progress: Receives a line of text at each stage.

    Raises:
        ModelNotAvailableError: the open weights or tokenizer cannot be had either.

    """
    from huggingface_hub import errors as hub_errors
    from huggingface_hub import hf_hub_download

    files = model_files(config)
    result = VoicePull()

    def fetch(hub_file: HubFile) -> None:
        check()
        hf_hub_download(hub_file.repo_id, hub_file.filename, revision=hub_file.revision,
                        token=token, tqdm_class=tqdm_class)

    if files.cloning is not None:
        try:
            progress(f"Downloading the voice-cloning weights ({files.cloning.repo_id})...")
            fetch(files.cloning)
            result.cloning = True
        except Exception as err:
            if not _is_gated(err) or files.plain is None:
                raise
            result.note = gated_note(files.cloning, token)
            progress(result.note)
    if not result.cloning:
        if files.plain is None:
            raise ModelNotAvailableError(f"{files.name} has no weights without voice cloning.")
        progress(f"Downloading the weights without voice cloning ({files.plain.repo_id})...")
        fetch(files.plain)
    progress("Downloading the tokenizer...")
    fetch(files.tokenizer)
    for name, hub_file in files.builtin_voices().items():
        try:
            fetch(hub_file)
            result.voices.append(name)
        except hub_errors.RemoteEntryNotFoundError:
            continue  # not every model ships every voice; the others are enough
        # (LocalEntryNotFoundError, a dropped connection, ends the pull: it is not "absent")
    progress("Built-in voices: " + (", ".join(result.voices) or "none for this model") + ".")
    return result


def describe(result: Any) -> str:
    """One line for the CLI and the window after a pull."""
    if result.cloning:
        return "Voice model ready: enrolled voices and built-in voices can speak replies."
    return ("Voice model ready with built-in voices only (" + ", ".join(result.voices) +
            "). " + (result.note or ""))
