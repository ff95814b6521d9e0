"""openai-whisper: model size from settings (tiny ... large, .en variants) or a checkpoint file.

With no model named it runs the bundled Whisper tiny.en, converted once from its CTranslate2
form (see ``ct2_whisper``), so this backend also works offline out of the box.

A size loads from whisper's own download cache (``~/.cache/whisper``) when it is there, else
from the catalogue's CTranslate2 download of that size (pulled once for both backends,
``engine.install.asr_pull``), converted once into the app's cache. A missing one is not
downloaded implicitly here; the error says how to pull it. fp16 on CUDA.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from engine.asr.faster_backend import (
    BUNDLED,
    not_pulled_error,
    pulled_folder,
    resolve_size,
)
from engine.asr.types import Segment, Transcript
from engine.errors import MissingDependencyError, ModelLoadError, ModelNotAvailableError
from engine.models.catalogue import CatalogueEntry, asr_catalogue, asr_entry


def _whisper_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"


def _bundled_checkpoint() -> Path:
    """The bundled tiny.en (CTranslate2) as an openai-whisper checkpoint, converted once."""
    from engine import paths
    from engine.asr.ct2_whisper import convert
    from engine.asr.faster_backend import bundled_model_path

    source = bundled_model_path() / "model.bin"
    stat = source.stat()
    target = paths.cache_dir() / "whisper" / f"bundled-tiny.en-{stat.st_size}-{stat.st_mtime_ns}.pt"
    if not target.is_file():
        convert(source.parent, target)
    return target


def _converted_dir() -> Path:
    from engine import paths

    return paths.cache_dir() / "whisper"


def converted_checkpoint(entry: CatalogueEntry, folder: Path) -> Path:
    """The pulled CTranslate2 size ``entry`` (in ``folder``) as an openai-whisper checkpoint.

    Converted once into the app's cache; the name carries the pulled commit (the snapshot
    folder's name), so a newer pull of the size is converted afresh.
    """
    from engine.asr.ct2_whisper import convert

    target = _converted_dir() / f"{entry.size}-{folder.name[:12]}.pt"
    if not target.is_file():
        try:
            convert(folder, target)
        except (OSError, ValueError, KeyError) as err:
            raise ModelLoadError(f"Could not convert the Whisper model {entry.size} in {folder} "
                                 f"for openai-whisper: {err}") from err
    return target


def converted_checkpoints(entry: CatalogueEntry) -> list[Path]:
    """The checkpoints converted from the size ``entry`` (removing the size removes them)."""
    # "small-*" does not match "small.en-*" nor "distil-small.en-*": sizes never collide.
    return sorted(_converted_dir().glob(f"{entry.size}-*.pt"))


def size_checkpoint(model: str) -> Path:
    """The checkpoint of the Whisper size ``model``: whisper's own download, else the pull.

    Raises:
        ModelNotAvailableError: the size is on this computer in neither form (the message says
            how to pull it), or ``model`` is no size at all.

    """
    import whisper

    own = model in whisper.available_models()
    if own:
        cached = _whisper_cache() / Path(whisper._MODELS[model]).name
        if cached.is_file():
            return cached
    entry = asr_entry(model)
    if entry is not None and entry.kind == "asr":
        folder = pulled_folder(entry)
        if folder is None:
            raise not_pulled_error(entry)
        return converted_checkpoint(entry, folder)
    if own:  # a size the catalogue does not offer (large-v2, turbo...)
        raise ModelNotAvailableError(
            f"The Whisper model {model!r} is not downloaded.",
            hint=f"Download it once with network access: python -c \"import whisper; "
                 f"whisper.load_model('{model}')\", or choose a size from "
                 "talk-to-transformers models list.")
    sizes = [e.size for e in asr_catalogue() if e.kind == "asr" and e.size]
    raise ModelNotAvailableError(
        f"Unknown Whisper model {model!r}.",
        hint=f"Sizes: {', '.join(sizes)} (pull one: talk-to-transformers models pull SIZE); "
             "or a .pt checkpoint.")


class WhisperRecognizer:
    """openai-whisper; ``model`` is a size ("small.en"), bundled, auto, or a ``.pt`` path."""

    def __init__(self, model: str = BUNDLED, device: str = "auto", language: str | None = None,
                 beam_size: int | None = None):
        try:
            import whisper
        except ImportError as err:
            raise MissingDependencyError("The openai-whisper backend is not installed.",
                                         hint="pip install openai-whisper") from err
        from engine.models.device import resolve

        placement = resolve(device)
        self.device = placement.device
        self.language = None if language in (None, "auto") else language
        self.beam_size = beam_size
        model = resolve_size(model, self.device)
        path = Path(model).expanduser()
        if model == BUNDLED:
            source = str(_bundled_checkpoint())
        elif path.suffix == ".pt" or path.is_file():
            if not path.is_file():
                raise ModelNotAvailableError(f"No Whisper checkpoint at {path}.")
            source = str(path)
        else:
            source = str(size_checkpoint(model))
        try:
            self._model = whisper.load_model(source, device=self.device)
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            raise ModelLoadError(f"Could not load the Whisper checkpoint {source}: {err}"
                                 ) from err
        self.model_name = model

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Recognise 16 kHz mono float32 audio."""
        from engine.asr import guard

        started = time.perf_counter()
        audio = guard.check_audio(audio)
        speech = guard.find_speech(audio)  # None: nothing voiced, Whisper would only invent
        segments: tuple[Segment, ...] = ()
        language = self.language or ""
        if speech is not None:
            seconds = len(speech.audio) / 16000
            # 224: openai-whisper's own sample_len, which the cap never raises.
            cap = guard.token_cap(seconds, english=guard.english(self.language, self.model_name),
                                  ceiling=224, listed=1.0)
            result = self._model.transcribe(
                speech.audio, language=self.language, temperature=0.0,
                fp16=self.device == "cuda", beam_size=self.beam_size,
                condition_on_previous_text=False, verbose=None,
                sample_len=cap.tokens if cap else None)
            segments = guard.kept([
                guard.Decoded(float(s["start"]), float(s["end"]), s["text"],
                              float(s["no_speech_prob"]), float(s["avg_logprob"]),
                              float(s["compression_ratio"]), len(s["tokens"]))
                for s in result.get("segments", [])], speech, cap)
            language = str(result.get("language") or language)
        return Transcript(
            text=" ".join(s.text for s in segments).strip(),
            language=language,
            segments=segments,
            duration=len(audio) / 16000,
            timings={"transcribe": time.perf_counter() - started},
        )
