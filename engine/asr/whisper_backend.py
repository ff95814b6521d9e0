"""openai-whisper: model size from settings (tiny ... large, .en variants) or a checkpoint file.

With no model named it runs the bundled Whisper tiny.en, converted once from its CTranslate2
form (see ``ct2_whisper``), so this backend also works offline out of the box.

Sizes load from whisper's own download cache (``~/.cache/whisper``); a missing one is not
downloaded implicitly here, the error says how to get it. fp16 on CUDA.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from engine.asr.faster_backend import BUNDLED
from engine.asr.types import Segment, Transcript
from engine.errors import MissingDependencyError, ModelLoadError, ModelNotAvailableError


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


class WhisperRecognizer:
    """openai-whisper; ``model`` is a size name ("small.en") or a path to a ``.pt`` checkpoint."""

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
        path = Path(model).expanduser()
        if model == BUNDLED:
            source = str(_bundled_checkpoint())
        elif path.suffix == ".pt" or path.is_file():
            if not path.is_file():
                raise ModelNotAvailableError(f"No Whisper checkpoint at {path}.")
            source = str(path)
        elif model in whisper.available_models():
            cached = _whisper_cache() / Path(whisper._MODELS[model]).name
            if not cached.is_file():
                raise ModelNotAvailableError(
                    f"The Whisper model {model!r} is not downloaded.",
                    hint=f"Download it once with network access: python -c \"import whisper; "
                         f"whisper.load_model('{model}')\", or point to a checkpoint file.",
                )
            source = str(cached)
        else:
            raise ModelNotAvailableError(
                f"Unknown Whisper model {model!r}.",
                hint=f"Sizes: {', '.join(whisper.available_models())}; or a .pt checkpoint.")
        try:
            self._model = whisper.load_model(source, device=self.device)
        except (OSError, RuntimeError, KeyError, ValueError) as err:
            raise ModelLoadError(f"Could not load the Whisper checkpoint {source}: {err}"
                                 ) from err
        self.model_name = model

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Recognise 16 kHz mono float32 audio."""
        started = time.perf_counter()
        result = self._model.transcribe(
            np.asarray(audio, dtype=np.float32), language=self.language, temperature=0.0,
            fp16=self.device == "cuda", beam_size=self.beam_size,
            condition_on_previous_text=False, verbose=None)
        segments = tuple(Segment(float(s["start"]), float(s["end"]), s["text"].strip())
                         for s in result.get("segments", []))
        return Transcript(
            text=str(result.get("text", "")).strip(),
            language=str(result.get("language") or self.language or ""),
            segments=segments,
            duration=len(audio) / 16000,
            timings={"transcribe": time.perf_counter() - started},
        )
