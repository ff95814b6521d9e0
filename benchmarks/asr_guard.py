"""What Whisper writes for silence, noise, tones and speech, with and without ``engine.asr.guard``.

Per clip: the words and the seconds per call with the guard (the recognizers as shipped),
without it (the whole recording to Whisper, every segment kept), and with ``--silero`` also
faster-whisper's own Silero VAD filter (``vad_filter=True``) in place of the app's webrtcvad
gate, Whisper's signals still filtered. Real speech (espeak-ng sentences, the
pocketsphinx-testdata men, clean and in pink noise) also gets its word error rate.

    .venv/bin/python benchmarks/asr_guard.py [--asr faster-whisper|whisper] [--silero] [--long]

``--long`` adds 30 minutes of digital silence and 5 minutes of loud pink noise (the silence
takes about a minute without the guard).
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.asr import guard, open_recognizer  # noqa: E402
from tests import real_speech  # noqa: E402
from tests.speech import SENTENCES, speech_array, word_error_rate  # noqa: E402
from tests.test_asr_guard import (  # noqa: E402
    RATE,
    _at,
    _pink,
    noise_clips,
    real_clips,
    tone_clips,
)


def modes(recognizer, silero: bool) -> dict[str, Callable[[np.ndarray], str]]:
    """Name -> transcribe function, each under its guard options."""
    def under(options: guard.GuardOptions, vad_filter: bool = False):
        def run(audio: np.ndarray) -> str:
            shipped, decode = guard.OPTIONS, recognizer._model.transcribe
            guard.OPTIONS = options
            if vad_filter:  # faster-whisper's Silero filter in place of the app's gate
                recognizer._model.transcribe = lambda a, **kw: decode(a, **{**kw,
                                                                          "vad_filter": True})
            try:
                return recognizer.transcribe(audio).text
            finally:
                guard.OPTIONS = shipped
                if vad_filter:
                    del recognizer._model.transcribe  # back to the class's method
        return run

    found = {"guard": under(guard.OPTIONS), "no guard": under(guard.OFF)}
    if silero:
        found["silero+filter"] = under(guard.GuardOptions(vad_gate=False), vad_filter=True)
    return found


def clips(long: bool) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    kinds = {
        "silence": {"digital silence, 2 s": np.zeros(2 * RATE, np.float32),
                    "digital silence, 30 s": np.zeros(30 * RATE, np.float32),
                    "digital silence, 10 min": np.zeros(600 * RATE, np.float32)},
        "noise": {**noise_clips(),
                  "white noise -20 dBFS, 10 s": _at(rng.standard_normal(10 * RATE), -20),
                  "pink noise -20 dBFS, 10 s": _at(_pink(10 * RATE, rng), -20)},
        "tones": tone_clips(),
    }
    if long:
        kinds["silence"]["digital silence, 30 min"] = np.zeros(1800 * RATE, np.float32)
        kinds["noise"]["pink noise -10 dBFS, 5 min"] = _at(_pink(300 * RATE, rng), -10)
    return kinds


def speech_clips() -> list[tuple[str, str, np.ndarray]]:
    folder = Path(tempfile.mkdtemp())
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    found = [(f"espeak: {s}", s, speech_array(s, folder)) for s in SENTENCES]
    if real_speech.available():
        found += real_clips()
    else:
        print(f"(no real recordings: {real_speech.SKIP_REASON})")
    return found


def _noisy(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    padded = np.concatenate([np.zeros(RATE // 2), audio, np.zeros(RATE // 2)])
    noise = _pink(len(padded), rng)
    rms = float(np.sqrt(np.mean(np.square(padded))))
    noise *= rms / float(np.sqrt(np.mean(np.square(noise)))) / 10 ** (snr_db / 20)
    return (padded + noise).astype(np.float32)


def timed(run: Callable[[np.ndarray], str], audio: np.ndarray) -> tuple[str, float]:
    started = time.perf_counter()
    text = run(audio)
    return text, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asr", default="faster-whisper", choices=("faster-whisper", "whisper"))
    parser.add_argument("--silero", action="store_true",
                        help="also faster-whisper's Silero VAD filter instead of webrtcvad")
    parser.add_argument("--long", action="store_true",
                        help="add 30 min of silence and 5 min of loud pink noise")
    args = parser.parse_args()
    if args.silero and args.asr != "faster-whisper":
        parser.error("--silero is faster-whisper's filter")
    recognizer = open_recognizer(args.asr, device="cpu")
    warm = Path(tempfile.mkdtemp())
    atexit.register(shutil.rmtree, warm, ignore_errors=True)
    recognizer.transcribe(speech_array(SENTENCES[0], warm))  # warm-up
    runs = modes(recognizer, args.silero)
    print(f"{args.asr}, bundled tiny.en, CPU; text (seconds per call) per mode: "
          f"{', '.join(runs)}")
    for kind, group in clips(args.long).items():
        print(f"\n== {kind}")
        for name, audio in group.items():
            print(f"{name}")
            for mode, run in runs.items():
                text, seconds = timed(run, audio)
                shown = text if len(text) <= 70 else text[:67] + "..."
                print(f"    {mode:<14} {seconds:6.2f} s  {shown!r}")
    rng = np.random.default_rng(4)
    speech = speech_clips()
    for label, snr in (("real speech", None), ("real speech in pink noise, 10 dB SNR", 10),
                       ("real speech in pink noise, 0 dB SNR", 0)):
        print(f"\n== {label}")
        wers: dict[str, list[float]] = {mode: [] for mode in runs}
        seconds: dict[str, list[float]] = {mode: [] for mode in runs}
        for name, reference, audio in speech:
            audio = audio if snr is None else _noisy(audio, snr, rng)
            texts = {}
            for mode, run in runs.items():
                texts[mode], took = timed(run, audio)
                wers[mode].append(word_error_rate(reference, texts[mode]))
                seconds[mode].append(took)
            if snr is None:  # the words of each clean clip; other modes only where they differ
                print(f"{name[:60]}\n    WER " + ", ".join(
                    f"{mode} {wers[mode][-1]:.2f}" for mode in runs) + f"  {texts['guard']!r}")
                for mode, text in texts.items():
                    if text != texts["guard"]:
                        print(f"    {mode}: {text!r}")
        for mode in runs:
            print(f"    {mode:<14} mean WER {statistics.mean(wers[mode]):.3f}, "
                  f"{statistics.median(seconds[mode]):.2f} s per call (median), "
                  f"{sum(w >= 1 for w in wers[mode])} clips with no word right")


if __name__ == "__main__":
    main()
