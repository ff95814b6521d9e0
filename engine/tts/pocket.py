"""Pocket TTS through its authors' runtime (``pocket-tts``): voice cloning, streamed by frames.

The runtime generates 80 ms latent frames on one thread and decodes them to audio on another;
:meth:`PocketTTS.synthesize` hands each decoded chunk on the moment it exists, so speech starts
after the first frame rather than after the sentence. Stopping the iteration (a barge-in) stops
generation at the next frame.

Weights, tokenizer and built-in voices are pulled by the app's model manager
(:mod:`engine.install.voice_pull`); here they are only looked up in the Hub cache, so nothing is
ever downloaded at run time. An enrolled voice is encoded once per model into the runtime's
conditioning state, cached as safetensors in the voice folder.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ModelLoadError, ModelNotAvailableError, TalkError
from engine.models.catalogue import CLONING_REPO
from engine.tts.builtin import BuiltinVoice
from engine.tts.runtime import DEFAULT_BUILTIN, ModelFiles, model_files, runtime
from engine.tts.text import normalise
from engine.tts.types import AudioChunk

log = logging.getLogger(__name__)
SAMPLE_RATE = 24000  # Hz, the codec's
# Torch threads while a sentence is synthesised. The runtime runs two threads of its own (frame
# generation and decoding), so one torch thread each fills two cores; two each oversubscribe
# them. benchmarks/tts.py, 2 cores, shape-true (random weights), two runs, first chunk ms / RTF
# at 1 vs 2 threads: full model int8 55-64 / 0.15-0.16 vs 60-97 / 0.17-0.19; english_7m 30-37 /
# 0.085-0.11 vs 41-47 / 0.09-0.13; english_2m_refl 17-19 / 0.06 vs 23-24 / 0.06-0.07.
# Chat and Whisper keep the process's own setting.
TTS_THREADS = 1
FRAME_SAMPLES = 1920  # one 80 ms latent frame at 24 kHz
STATE_PREFIX = "pocket_state."  # cached conditioning files in a voice folder


class CloningUnavailableError(TalkError):
    """An enrolled voice was asked for, but only the weights without cloning are pulled."""

    code = "cloning_unavailable"


def cloning_hint() -> str:
    """What a person does to get the gated voice-cloning weights."""
    return (f"The cloning weights are gated: accept the model's terms at "
            f"https://huggingface.co/{CLONING_REPO}, save your Hugging Face token (Settings > "
            "Hugging Face token, or `talk-to-transformers token set`), then pull the voice model "
            "again. Built-in voices work meanwhile.")


def resolve_model(model: str, device: str) -> tuple[str, str, bool]:
    """(id, runtime config, int8 on a CPU) for a catalogue id, ``auto``, or a config YAML path.

    ``auto`` is the catalogue's default for the device (a small model on a CPU, where first
    audio must come fast, the full one on CUDA; see the README's voice section) when it is
    pulled, else the first pulled voice model, else the default (whose error says to pull it).
    """
    from engine.models.catalogue import catalogue_entry, tts_catalogue

    if model.endswith((".yaml", ".yml")):
        return Path(model).stem, model, False
    if model == "auto":
        from engine.tts.runtime import voice_model_ready

        entries = tts_catalogue()
        entry = next((e for e in entries if device in e.default_on), entries[0])
        if not voice_model_ready(entry):
            entry = next((e for e in entries if voice_model_ready(e)), entry)
    else:
        named = catalogue_entry(model)
        if named is None or named.kind != "tts" or not named.config:
            names = ", ".join(e.id for e in tts_catalogue())
            raise ModelNotAvailableError(f"{model!r} is not a voice model in the catalogue.",
                                         hint=f"Choose one of: {names}.", code="model_unknown")
        entry = named
    return entry.id, entry.config or "", entry.int8_on_cpu


class PocketTTS:
    """One loaded pocket-tts model; :meth:`synthesize` per sentence.

    Args:
        model: A catalogue id (``pocket-tts-7m``), ``auto`` (the device's default) or the path of
            a pocket-tts config YAML.
        device: ``auto``, ``cpu`` or ``cuda`` (the runtime computes in float32 on either).
        temperature: Sampling temperature; None: the model's own (0.3).
        eos_threshold: End-of-speech threshold; None: the model's own. A huge value never stops
            early (the benchmark uses it for a fixed frame count).
        quantize: Dynamic int8 for the flow LM's transformer, as the runtime offers; None: on a
            CPU for the catalogue models marked so (the full model: first chunk 180 -> 60 ms;
            the small ones gain nothing, see the README), falling back to float32 if this torch
            cannot quantize.
        threads: Torch threads while synthesising (see TTS_THREADS).

    Raises:
        ModelNotAvailableError: the model is not pulled (the hint names the pull command).
        ModelLoadError: the files are there but do not load.
        MissingDependencyError: pocket-tts is not installed.

    """

    rate = SAMPLE_RATE

    def __init__(self, model: str = "auto", device: str = "auto", *,
                 temperature: float | None = None, eos_threshold: float | None = None,
                 quantize: bool | None = None, threads: int = TTS_THREADS):
        from engine.models.device import resolve

        self.placement = resolve(device)
        self.threads = threads
        self.model_id, config, int8_on_cpu = resolve_model(model, self.placement.device)
        from engine.models.catalogue import catalogue_entry

        entry = catalogue_entry(self.model_id)
        self.model_name = entry.name if entry is not None else self.model_id  # for people
        if quantize is None:
            quantize = int8_on_cpu and self.placement.device == "cpu"
        try:
            self.files: ModelFiles = model_files(config)
        except (FileNotFoundError, ValueError) as err:
            raise ModelLoadError(f"The voice model config {config!r} cannot be read: {err}"
                                 ) from err
        weights = self.files.cloning.local() if self.files.cloning else None
        self.cloning = weights is not None
        if weights is None and self.files.plain is not None:
            weights = self.files.plain.local()
        tokenizer = self.files.tokenizer.local()
        if weights is None or tokenizer is None:
            raise ModelNotAvailableError(
                f"The voice model {self.model_name} is not downloaded.",
                hint=f"Pull it: talk-to-transformers models pull {self.model_id} "
                     "(or in the window: Models).")
        self.weights = weights
        self.builtin_voices = {name: path for name, hub in self.files.builtin_voices().items()
                               if (path := hub.local()) is not None}
        # A voice's cached state belongs to these exact weights: another model, or another
        # release of this one, gets a state of its own.
        self.state_key = f"{self.files.name}.{_digest(str(weights.resolve()))}"
        self._states: dict[str, Any] = {}
        self._lock = threading.Lock()  # the runtime is not thread-safe: one sentence at a time
        self._model, self.quantized = _load(self.files, weights, tokenizer, temperature,
                                            eos_threshold, quantize)
        if self.placement.device == "cuda":
            self._model.to("cuda")
        self.last_seconds = 0.0

    # -- voices -------------------------------------------------------------------------------
    def voice_state(self, voice: Any | None) -> Any:
        """The runtime's conditioning state for ``voice`` (None: the default built-in voice).

        Built-in voices load from their pulled state file; an enrolled voice is encoded from its
        sample once per model and cached in its folder.

        Raises:
            ModelNotAvailableError: a built-in voice that is not pulled.
            CloningUnavailableError: an enrolled voice without the cloning weights.
            VoiceError: the voice's sample is damaged.

        """
        if voice is None:
            voice = BuiltinVoice(DEFAULT_BUILTIN)
        key = voice.ref if isinstance(voice, BuiltinVoice) else _sample_key(voice)
        state = self._states.get(key)
        if state is None:
            state = (self._builtin_state(voice) if isinstance(voice, BuiltinVoice)
                     else self._enrolled_state(voice))
            self._states[key] = state
        return state

    def _builtin_state(self, voice: BuiltinVoice) -> Any:
        path = self.builtin_voices.get(voice.name)
        if path is None:
            known = ", ".join(sorted(self.builtin_voices)) or "none yet"
            raise ModelNotAvailableError(
                f"The built-in voice {voice.name!r} is not downloaded for {self.model_id} "
                f"(downloaded: {known}).",
                hint=f"Pull the voice model again: talk-to-transformers models pull "
                     f"{self.model_id}", code="voice_missing")
        try:
            return self._model.get_state_for_audio_prompt(path)
        except Exception as err:  # safetensors' own errors are no OSError
            raise ModelLoadError(
                f"The built-in voice {voice.name!r} of {self.model_id} is damaged: {err}",
                hint=f"Pull the voice model again: talk-to-transformers models pull "
                     f"{self.model_id}", code="voice_damaged") from err

    def state_file(self, voice: Any) -> Path:
        """Where an enrolled voice's state for this model is cached."""
        return voice.folder / f"{STATE_PREFIX}{self.state_key}.safetensors"

    def _enrolled_state(self, voice: Any) -> Any:
        if not self.cloning:
            raise CloningUnavailableError(
                f"Speaking as {voice.name!r} needs Pocket TTS's voice-cloning weights; only the "
                "weights without cloning are downloaded.", hint=cloning_hint())
        cache = self.state_file(voice)
        if cache.is_file():
            try:  # a damaged cache is rebuilt from the sample, never fatal
                return self._model.get_state_for_audio_prompt(cache)
            except Exception as err:
                log.warning("Rebuilding the damaged voice state %s: %s", cache, err)
        state = self._encode(voice)
        try:
            _save_state(state, cache)
            for old in voice.folder.glob(f"{STATE_PREFIX}{self.files.name}.*.safetensors"):
                if old != cache:  # the state of weights this model no longer uses
                    old.unlink(missing_ok=True)
        except OSError as err:  # a read-only or vanished folder: speak now, encode again later
            log.warning("Could not cache the voice state in %s: %s", cache, err)
        return state

    def _encode(self, voice: Any) -> Any:
        import torch

        mono, rate = voice.sample()
        if rate != self.rate:
            from engine.audio.convert import resample

            mono = resample(mono, rate, self.rate)
        with self._lock:
            return self._model.get_state_for_audio_prompt(torch.from_numpy(mono)[None, :])

    # -- synthesis ----------------------------------------------------------------------------
    def synthesize(self, text: str,
                   voice: Any | None = None) -> Generator[AudioChunk, None, None]:
        """Speak ``text`` (normalised first) in ``voice``; chunks come as frames are decoded.

        Closing the iterator early (the pipeline does on a barge-in) stops generation at the
        next frame.
        """
        spoken = normalise(text)
        if not spoken:
            return
        import torch

        state = self.voice_state(voice)
        stop = threading.Event()
        started = time.perf_counter()
        with self._lock:
            # The runtime's threads start inside the stream and take the count set now; the
            # process's own count is back once the sentence is done (the device gate keeps
            # chat and Whisper from computing meanwhile).
            threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            stream = self._model.generate_audio_stream(state, spoken, copy_state=True,
                                                       stop=stop)
            try:
                for chunk in stream:
                    yield AudioChunk(chunk.detach().float().cpu().numpy(), self.rate, text)
            finally:
                # Stopped early (a barge-in) or not: the runtime ends at its next frame, and
                # running its stream out waits for its threads, so none outlives the sentence
                # (they would compute on, outside the device gate).
                stop.set()
                for _ in stream:
                    pass
                torch.set_num_threads(threads)
                self.last_seconds = time.perf_counter() - started


def _sample_key(voice: Any) -> str:
    """The in-memory key of an enrolled voice's state: a re-enrolled sample is a new voice."""
    try:
        stat = voice.sample_path.stat()
    except OSError:
        return f"enrolled:{voice.folder}"
    return f"enrolled:{voice.folder}:{stat.st_mtime_ns}:{stat.st_size}"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _save_state(state: Any, path: Path) -> None:
    """Write the runtime's state file atomically (a crash never leaves half a cache)."""
    from engine.fsutil import atomic_path

    with atomic_path(path) as tmp:
        runtime().export_model_state(state, tmp)


def _load(files: ModelFiles, weights: Path, tokenizer: Path, temperature: float | None,
          eos_threshold: float | None, quantize: bool) -> tuple[Any, bool]:
    """Build the model through the runtime's public ``load_model`` from local files only.

    The config's ``hf://`` addresses are replaced by the cached files in a temporary copy of
    the YAML, so the runtime reads from disk and never calls the Hub. Returns the model and
    whether it is quantized.
    """
    import warnings

    import yaml

    tts_model_class = runtime().TTSModel
    data = copy.deepcopy(files.config)
    data["weights_path"] = str(weights)
    data["weights_path_without_voice_cloning"] = None
    data["flow_lm"]["lookup_table"]["tokenizer_path"] = str(tokenizer)
    with tempfile.TemporaryDirectory(prefix="ttt-pocket-") as tmp:
        local = Path(tmp) / f"{files.name}.yaml"
        local.write_text(yaml.safe_dump(data), encoding="utf-8")
        options = {"config": local, "temp": temperature, "eos_threshold": eos_threshold}
        try:
            if quantize:
                try:
                    with warnings.catch_warnings():  # torch.ao's own deprecation notices
                        warnings.simplefilter("ignore")
                        return tts_model_class.load_model(**options, quantize=True).eval(), True
                except (RuntimeError, NotImplementedError, ImportError) as err:
                    log.warning("int8 quantization unavailable (%s); using float32", err)
            return tts_model_class.load_model(**options).eval(), False
        except Exception as err:  # damaged files raise safetensors' and tokenizers' own errors
            raise ModelLoadError(f"Could not load the voice model {files.name} from "
                                 f"{weights.parent}: {err}",
                                 hint="Pull it again to replace damaged files.") from err


def samples_of(chunks: Iterator[AudioChunk]) -> np.ndarray:
    """All chunks joined (for ``say --out`` and previews)."""
    parts = [chunk.samples for chunk in chunks]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
