"""When can the voice start? Time to the first speakable piece of a reply, per splitting rule.

The starter persona (real weights, SmolLM2-135M) answers a few everyday prompts once, greedily,
and every token's arrival time is kept; each splitting rule then replays the same timed stream,
so the rules are compared on identical replies in one run. Printed per rule: time from the
request to the first piece (p50/p95), and how long that first piece is (words, p50).

    .venv/bin/python benchmarks/first_piece.py [--persona starter] [--prompts 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = [
    "What should I cook tonight?",
    "Tell me about your day.",
    "Do you like music?",
    "How do I stay focused when I work from home?",
    "What is the best way to learn a language?",
    "Can you recommend a good book?",
    "Why is the sky blue?",
    "Any plans for the weekend?",
    "What makes a good friend?",
    "How do you relax after a long week?",
]

RULES = {
    "sentence end only": {"first_clause_chars": 10**6},
    "clause after 30 chars (before)": {},
    "first 4 words": {"first_words": 4},
    "first 5 words (the pipeline's)": {"first_words": 5},
    "first 6 words": {"first_words": 6},
    "first 8 words": {"first_words": 8},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persona", default="starter")
    parser.add_argument("--prompts", type=int, default=8)
    args = parser.parse_args()

    from engine.chat.local import LocalChat
    from engine.chat.types import Turn
    from engine.models.registry import find_persona
    from engine.tts.text import SentenceSplitter

    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().split()[:3]}")
    persona = find_persona(args.persona)
    chat = LocalChat.load(persona, device="cpu", do_sample=False)
    chat.reply([Turn("user", "Hello!")])  # warm up
    streams = []
    for prompt in PROMPTS[:args.prompts]:
        started = time.perf_counter()
        timed = [(time.perf_counter() - started, piece)
                 for piece in chat.stream_reply([Turn("user", prompt)])]
        streams.append(timed)
    print(f"{len(streams)} replies of {persona.name}, greedy, CPU; "
          f"tokens per reply p50 {statistics.median(len(s) for s in streams):.0f}")
    print(f"\n{'rule':<34}{'first piece p50 ms':>20}{'p95 ms':>9}{'words p50':>11}")
    for name, options in RULES.items():
        times, words = [], []
        for timed in streams:
            splitter = SentenceSplitter(**options)
            first = None
            for at, piece in timed:
                out = splitter.feed(piece)
                if out:
                    first = (at, out[0])
                    break
            if first is None:  # a reply with no cut at all: spoken whole at its end
                rest = splitter.flush()
                first = (timed[-1][0] if timed else 0.0, rest[0] if rest else "")
            times.append(first[0])
            words.append(len(first[1].split()))
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(f"{name:<34}{statistics.median(times) * 1000:>20.0f}{p95 * 1000:>9.0f}"
              f"{statistics.median(words):>11.0f}")
    with open("/proc/loadavg") as f:
        print(f"\nload average at end: {f.read().split()[:3]}")


if __name__ == "__main__":
    main()
