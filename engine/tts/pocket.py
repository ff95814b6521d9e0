"""Pocket TTS through transformers: zero-shot voice cloning from an audio prompt, 24 kHz.

A voice's conditioning (the codec latents of its sample) is computed once and cached as
safetensors in the voice folder, so speaking never re-encodes the sample. The processor is built
from its parts: a saved ``processor_config.json`` stores the codec's absolute path, which breaks
as soon as the folder moves (or lives in the Hub cache of another machine).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import MissingDependencyError, ModelLoadError, ModelNotAvailableError
from engine.tts.text import normalise
from engine.tts.types import AudioChunk

DEFAULT_MODEL = "eustlb/pocket-tts"  # the checkpoint the transformers docs name
CODEC_SUBFOLDER = "audio_tokenizer"
LATENTS_FILE = "pocket_tts_latents.safetensors"
log = logging.getLogger(__name__)
MAX_FRAMES = 600  # 48 s at 12.5 frames/s: a bound for one piece, not a target


def model_folder(ref: str) -> Path:
    """A local folder for ``ref``: a path, or a Hub repo already in the cache (never fetched)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(ref, "config.json")
    if not isinstance(config, str):
        raise ModelNotAvailableError(
            f"The voice model {ref} is not downloaded; replies are text only until it is.",
            hint="Pull it: talk-to-transformers models pull pocket-tts")
    return Path(config).parent


class PocketTTS:
    """The cloning TTS; load once, then :meth:`synthesize` per sentence."""

    rate = 24000

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "auto", *,
                 do_sample: bool = True, max_frames: int = MAX_FRAMES,
                 eos_threshold: float | None = None):
        try:
            import transformers
        except ImportError as err:
            raise MissingDependencyError("transformers is not installed.",
                                         hint="pip install transformers") from err
        if not hasattr(transformers, "PocketTTSForConditionalGeneration"):
            raise MissingDependencyError(
                "This transformers version has no Pocket TTS.",
                hint="pip install -U transformers")
        from engine.models.device import resolve

        self.placement = resolve(device)
        self.folder = model_folder(model)
        self.model_id = model
        self.do_sample = do_sample
        self.max_frames = max_frames
        self.eos_threshold = eos_threshold
        try:
            self._model, self._processor = _load(self.folder, self.placement)
        except (OSError, ValueError, KeyError) as err:
            raise ModelLoadError(f"Could not load the voice model in {self.folder}: {err}"
                                 ) from err

    # -- voice conditioning -------------------------------------------------------------------
    def voice_latents(self, voice: Any) -> Any:
        """The voice's prompt latents: from its cache file, or computed once and cached."""
        from safetensors.torch import load_file, save_file

        cache = voice.folder / LATENTS_FILE
        key = f"{self.model_id}"
        if cache.is_file():
            try:  # a damaged cache is rebuilt from the sample, never fatal
                if _safetensors_metadata(cache).get("model") == key:
                    return load_file(cache)["audio_prompt_latents"]
            except Exception as err:
                log.warning("Rebuilding the damaged voice cache %s: %s", cache, err)
        import soundfile as sf

        try:
            audio, rate = sf.read(str(voice.sample_path), dtype="float32")
        except (sf.LibsndfileError, OSError, RuntimeError) as err:
            from engine.voices.store import VoiceError

            raise VoiceError(f"The voice {voice.name!r} has a damaged sample "
                             f"({voice.sample_path.name}).",
                             hint="Delete the voice and enroll it again.",
                             code="voice_damaged") from err
        if rate != self.rate:
            from engine.audio.convert import resample

            audio = resample(audio, rate, self.rate)
        prompt = self._prompt("x", with_voice=True)
        inputs = self._processor(text=prompt, audio=[audio], sampling_rate=self.rate,
                                 return_tensors="pt")
        mask = inputs["audio_prompt_latents_mask"][0].bool()
        latents = inputs["audio_prompt_latents"][0][mask].contiguous()
        tmp = cache.with_suffix(".tmp")
        save_file({"audio_prompt_latents": latents}, str(tmp), metadata={"model": key})
        tmp.replace(cache)
        return latents

    # -- synthesis ----------------------------------------------------------------------------
    def synthesize(self, text: str, voice: Any | None = None) -> Iterator[AudioChunk]:
        """Speak ``text`` (normalised first) in ``voice``, or the model's own voice."""
        import torch

        spoken = normalise(text)
        if not spoken:
            return
        started = time.perf_counter()
        kwargs: dict[str, Any] = {}
        if voice is not None:
            kwargs["audio_prompt_latents"] = [self.voice_latents(voice)]
        inputs = self._processor(text=self._prompt(spoken, with_voice=voice is not None),
                                 return_tensors="pt", **kwargs)
        inputs = inputs.to(self.placement.device)
        options: dict[str, Any] = {"do_sample": self.do_sample, "max_new_tokens": self.max_frames}
        if self.eos_threshold is not None:
            options["eos_threshold"] = self.eos_threshold
        with torch.inference_mode():
            out = self._model.generate(**inputs, **options)
            audio = self._processor.decode(out.audio_latents, out.audio_latents_mask)[0]
        samples = audio.float().cpu().numpy().astype(np.float32)
        self.last_seconds = time.perf_counter() - started
        yield AudioChunk(samples, self.rate, text)

    def _prompt(self, text: str, with_voice: bool) -> str:
        content: list[dict[str, str]] = [{"type": "audio"}] if with_voice else []
        content.append({"type": "text", "text": text})
        return self._processor.apply_chat_template([{"role": "user", "content": content}])


def _safetensors_metadata(path: Path) -> dict[str, str]:
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(size)).get("__metadata__", {}) or {}


def _load(folder: Path, placement: Any) -> tuple[Any, Any]:
    from transformers import (
        AutoTokenizer,
        PocketTTSAudioTokenizerModel,
        PocketTTSFeatureExtractor,
        PocketTTSForConditionalGeneration,
        PocketTTSProcessor,
    )

    model = PocketTTSForConditionalGeneration.from_pretrained(
        folder, dtype=placement.dtype, trust_remote_code=False).to(placement.device).eval()
    codec = PocketTTSAudioTokenizerModel.from_pretrained(
        _codec_folder(folder), trust_remote_code=False).eval()
    template = folder / "chat_template.jinja"
    processor = PocketTTSProcessor(
        PocketTTSFeatureExtractor.from_pretrained(folder),
        AutoTokenizer.from_pretrained(folder),
        codec,
        chat_template=template.read_text(encoding="utf-8") if template.is_file() else None,
    )
    return model, processor


def _codec_folder(folder: Path) -> Path | str:
    """Where the codec is: the recorded path if it still exists, else beside the model."""
    recorded = None
    config = folder / "processor_config.json"
    if config.is_file():
        recorded = json.loads(config.read_text(encoding="utf-8")).get(
            "audio_tokenizer_name_or_path")
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    if (folder / CODEC_SUBFOLDER).is_dir():
        return folder / CODEC_SUBFOLDER
    if recorded and not Path(recorded).is_absolute():
        return model_folder(recorded)  # a Hub repo id, from the cache
    raise ModelLoadError(f"The voice model in {folder} has no audio codec "
                         f"(looked for {CODEC_SUBFOLDER}/ and {recorded!r}).")
