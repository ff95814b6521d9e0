"""How many threads should each model use? ASR and chat timed per thread count, side by side.

The voice pipeline's device gate lets one model compute at a time (engine.pipeline.gate), so
each model may use every core while it runs; the question is how many threads that is on a
small machine, where extra threads only fight each other. One run, rounds interleaved, so load
from elsewhere falls on every setting alike:

- Whisper tiny.en (bundled, faster-whisper int8): CTranslate2 ``cpu_threads`` 1, 2, 4 and its
  default (0), on an espeak-ng sentence;
- the starter persona (real weights): torch threads 1, 2, 4 (process-wide), first token and
  tokens per second of a 24-token greedy reply.

    .venv/bin/python benchmarks/threads.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import faster_whisper
    import torch

    from engine.asr.faster_backend import bundled_model_path
    from engine.chat.local import LocalChat
    from engine.chat.types import Turn
    from engine.models.registry import find_persona
    from tests.speech import SENTENCES, speech_array

    print(f"{os.cpu_count()} CPUs; load average at start {loadavg()}")
    scratch = Path(tempfile.mkdtemp())
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    clip = speech_array(SENTENCES[1], scratch)
    asr = {n: faster_whisper.WhisperModel(str(bundled_model_path()), device="cpu",
                                          compute_type="int8", cpu_threads=n,
                                          local_files_only=True) for n in (0, 1, 2, 4)}
    chat = LocalChat.load(find_persona("starter"), device="cpu", do_sample=False,
                          max_new_tokens=24)
    chat.reuse_kv_cache = False  # every round asks the same: each must read its prompt anew
    history = [Turn("user", "What should I cook tonight?")]
    asr_ms: dict[int, list[float]] = {n: [] for n in asr}
    first_ms: dict[int, list[float]] = {n: [] for n in (1, 2, 4)}
    rate: dict[int, list[float]] = {n: [] for n in (1, 2, 4)}
    default_threads = torch.get_num_threads()
    for round_ in range(args.rounds + 1):  # round 0 warms everything up
        for n, model in asr.items():
            started = time.perf_counter()
            segments, _ = model.transcribe(clip, language="en", beam_size=1, temperature=0.0,
                                           condition_on_previous_text=False)
            list(segments)
            if round_:
                asr_ms[n].append((time.perf_counter() - started) * 1000)
        for n in first_ms:
            torch.set_num_threads(n)
            started, first, count = time.perf_counter(), None, 0
            for _ in chat.stream_reply(history):
                first = first or time.perf_counter()
                count += 1
            end = time.perf_counter()
            if round_ and first is not None:
                first_ms[n].append((first - started) * 1000)
                rate[n].append(count / max(end - first, 1e-6))
    torch.set_num_threads(default_threads)
    print(f"\nWhisper tiny.en (faster-whisper int8), one 2.5 s sentence, {args.rounds} rounds")
    for n, values in asr_ms.items():
        label = f"cpu_threads={n}" + (" (its default)" if n == 0 else "")
        print(f"  {label:<28} p50 {statistics.median(values):6.0f} ms")
    print(f"\nstarter (SmolLM2-135M) greedy reply, {args.rounds} rounds")
    for n in first_ms:
        print(f"  torch threads {n:<14} first token p50 {statistics.median(first_ms[n]):6.0f} ms"
              f", {statistics.median(rate[n]):5.1f} pieces/s")
    print(f"\nload average at end {loadavg()}")


if __name__ == "__main__":
    main()
