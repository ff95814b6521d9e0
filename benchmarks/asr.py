"""Speech recognition speed: real-time factor and latency per backend/model, same audio.

Audio: espeak-ng sentences (needs espeak-ng and sox). Each backend/model that is available
here is loaded once (load time printed), warmed up, then run over every clip; prints median
latency per clip and the real-time factor (processing time / audio time; lower is faster).

    .venv/bin/python benchmarks/asr.py [--device cpu|cuda] [--runs 3]
        [--whisper-model PATH_OR_SIZE ...]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.asr import open_recognizer  # noqa: E402
from engine.errors import TalkError  # noqa: E402
from tests.speech import SENTENCES, speech_array, word_error_rate  # noqa: E402


def bench(name: str, make, clips, runs: int) -> None:
    started = time.perf_counter()
    try:
        recognizer = make()
    except TalkError as err:
        print(f"{name:<34} not available: {err.message}")
        return
    load_s = time.perf_counter() - started
    recognizer.transcribe(clips[0])  # warm-up
    latencies, audio_s, wers = [], 0.0, []
    for _ in range(runs):
        for sentence, clip in zip(SENTENCES, clips, strict=True):
            t = time.perf_counter()
            text = recognizer.transcribe(clip).text
            latencies.append(time.perf_counter() - t)
            audio_s += len(clip) / 16000
            wers.append(word_error_rate(sentence, text))
    rtf = sum(latencies) / audio_s
    p50, worst = statistics.median(latencies) * 1000, max(latencies) * 1000
    print(f"{name:<34} load {load_s:5.1f} s   latency p50 {p50:6.0f} ms  max {worst:6.0f} ms"
          f"   RTF {rtf:.3f}   WER {statistics.mean(wers):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--whisper-model", action="append", default=[],
                        help="openai-whisper size or checkpoint to include (repeatable)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    clips = [speech_array(s, folder) for s in SENTENCES]
    total = sum(len(c) for c in clips) / 16000
    print(f"{len(clips)} espeak-ng clips, {total:.1f} s of audio, device {args.device}, "
          f"{args.runs} runs each")
    bench("faster-whisper bundled tiny.en", lambda: open_recognizer(
        "faster-whisper", device=args.device, language="en"), clips, args.runs)
    bench("openai-whisper bundled tiny.en", lambda: open_recognizer(
        "whisper", device=args.device, language="en"), clips, args.runs)
    for model in args.whisper_model or ["base.en", "small.en"]:
        bench(f"openai-whisper {model}", lambda m=model: open_recognizer(
            "whisper", model=m, device=args.device, language="en"), clips, args.runs)


if __name__ == "__main__":
    main()
