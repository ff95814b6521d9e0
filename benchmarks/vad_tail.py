"""Hands-free: how much silence should end an utterance? Cut-offs of real speech per tail length.

The segmenter ends an utterance after ``end_s`` of silence; that silence is pure waiting after
the last word (time to first audio grows by it one for one). Too short a tail cuts people off at
the pauses inside what they say, which turns one sentence into two turns. Each real recorded
utterance (Debian packages, the same ones ``benchmarks/enroll_set.py`` fetches: Asterisk's
English, French and Colombian Spanish prompt voices and pocketsphinx-testdata's three men) is
played through the app's Listener with half a second of room noise before and two seconds
after, once per tail length, in one run. A cut-off is an utterance the segmenter ended before
the person's last word.

    .venv/bin/python benchmarks/vad_tail.py [--tails 0.3,0.4,0.5,0.6,0.8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NOISE_DBFS = -55.0  # a quiet room through a laptop microphone, not digital silence


def longest_pause(audio: np.ndarray, vad) -> float:
    """Longest run of unvoiced 30 ms frames between the first and last voiced ones, seconds."""
    n = 480
    verdicts = [vad.is_speech(audio[i:i + n]) for i in range(0, len(audio) - n + 1, n)]
    voiced = [i for i, v in enumerate(verdicts) if v]
    if not voiced:
        return 0.0
    longest = run = 0
    for v in verdicts[voiced[0]:voiced[-1] + 1]:
        run = 0 if v else run + 1
        longest = max(longest, run)
    return longest * 0.03


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tails", default="0.3,0.4,0.5,0.6,0.7,0.8")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "ttt-enroll-eval"))
    args = parser.parse_args()
    tails = [float(t) for t in args.tails.split(",")]

    from benchmarks.enroll_set import real_voices
    from engine.audio.listener import Listener, ListenOptions
    from engine.audio.segmenter import SegmenterOptions
    from engine.audio.vad import VoiceActivity

    voices = real_voices(Path(args.cache))
    rng = np.random.default_rng(7)
    clips = []
    for voice in voices.values():
        for prompt in voice.prompts:
            noise = rng.standard_normal(int(16000 * 0.5) + len(prompt) + 32000)
            noise *= 10 ** (NOISE_DBFS / 20)
            audio = noise.astype(np.float32)
            audio[8000:8000 + len(prompt)] += prompt
            clips.append((voice.key, audio, len(prompt) / 16000))
    print(f"{len(clips)} real utterances, {sum(c[2] for c in clips):.0f} s of speech; sources:")
    for voice in voices.values():
        print(f"  {len(voice.prompts):>3}  {voice.source}")
    pauses = sorted(longest_pause(audio, VoiceActivity(2)) for _, audio, _ in clips)
    print("longest pause inside an utterance (VAD, 30 ms frames): p50 "
          f"{np.percentile(pauses, 50):.2f} s, p90 {np.percentile(pauses, 90):.2f} s, "
          f"max {pauses[-1]:.2f} s")

    print(f"\n{'tail end_s':>10}{'cut off':>10}{'missed':>9}{'cut-off rate':>14}   by source")
    for tail in tails:
        options = ListenOptions(segmenter=SegmenterOptions(end_s=tail))
        cut, missed, per_source = 0, 0, {}
        for key, audio, seconds in clips:
            listener = Listener(options)
            consumed = [0]

            def blocks(audio=audio, consumed=consumed):
                for i in range(0, len(audio), 480):
                    consumed[0] = i + 480
                    yield audio[i:i + 480]

            ends = [consumed[0] for _ in listener.hands_free(blocks())]
            # Cut off: the segmenter ended an utterance while the person was still to speak
            # (a short last word after the pause may not even start a new utterance).
            speech_end = 8000 + int(seconds * 16000)
            is_cut = bool(ends) and ends[0] < speech_end
            cut += is_cut
            missed += not ends
            total, bad = per_source.get(key, (0, 0))
            per_source[key] = (total + 1, bad + is_cut)
        by = ", ".join(f"{k} {b}/{t}" for k, (t, b) in per_source.items())
        print(f"{tail:>10.2f}{cut:>10}{missed:>9}{cut / len(clips):>13.1%}   {by}")
    print("\n(end_s is added to every hands-free turn's wait; the window's default is "
          f"{SegmenterOptions().end_s} s.)")


if __name__ == "__main__":
    main()
