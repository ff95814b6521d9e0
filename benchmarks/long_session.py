"""Long session: T typed turns in one conversation; memory, prompt and store size as it goes.

The turns go through the real ChatSession (store, history budget, echo guard, streaming), with
varied messages, every tenth one a long paragraph. Every 50 turns (--every) it prints: the
process's resident memory (RSS), the Python heap (tracemalloc: allocated since turn 1 and still
alive), the live torch tensors, the newest prompt's tokens against the prompt limit (context minus
reply budget) and how many turns it holds, the store's files on disk (SQLite database and its
write-ahead log), and the mean time per turn over those 50. At the end: RSS growth from turn
50 to the last turn. Figures only; tests/test_long_session.py is the pass/fail check.

    .venv/bin/python benchmarks/long_session.py [--persona starter|tiny|FOLDER] [--turns 500]
        [--every 50] [--max-new-tokens N] [--context-tokens N] [--max-minutes M]
        [--device cpu] [--threads N] [--no-heap]

``--persona tiny`` builds the tests' tiny random DialoGPT (128-token context). The model cache
of the user's data folder is used (the starter's converted weights); the conversation goes to a
temporary database.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import random
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.chat.local import LocalChat  # noqa: E402
from engine.chat.types import Turn  # noqa: E402
from engine.conversation import ChatSession  # noqa: E402
from engine.errors import PromptTooLongError, TalkError  # noqa: E402
from engine.models.persona import load_persona  # noqa: E402
from engine.models.registry import find_persona  # noqa: E402
from engine.store import ConversationStore  # noqa: E402

SHORT = ["hi", "ok", "why?", "thanks!", "tell me more", "really?", "go on", "hmm"]
QUESTIONS = [
    "What is a good way to get started with {}?",
    "Can you explain how {} works, in two sentences?",
    "I had a long day at work and I feel tired. Is {} a good idea tonight?",
    "Do you prefer {} or reading a book?",
    "My friend says {} is overrated. What do you think?",
    "How would you describe {} to a ten year old?",
    "Tell me one surprising fact about {}.",
    "What should I know before I try {}?",
]
TOPICS = ["guitar", "the weather", "cooking pasta", "a train journey", "photosynthesis",
          "jazz", "hiking in the mountains", "chess", "the moon", "learning Spanish",
          "Zürich in winter", "a naïve question about C++"]
FILLER = ("Yesterday I walked along the river and watched the boats while thinking about what "
          "to do next year; I might move to a new city, take up painting, learn to cook "
          "properly, or finally finish the novel I started three summers ago. My sister thinks "
          "I should travel first, my parents would like me to stay close, and my friends keep "
          "sending me job adverts from places I have never heard of.").split()


def user_messages(n: int, seed: int = 500) -> list[str]:
    """``n`` varied typed messages: short replies, questions, and a long paragraph every tenth."""
    rng = random.Random(seed)
    messages = []
    for i in range(n):
        if i % 10 == 6:
            words = [rng.choice(FILLER) for _ in range(rng.randint(80, 220))]
            messages.append(" ".join(words).capitalize() + ". What do you make of all that?")
        elif i % 4 == 0:
            messages.append(rng.choice(SHORT))
        else:
            messages.append(rng.choice(QUESTIONS).format(rng.choice(TOPICS)))
    return messages


def fit(chat: LocalChat, text: str) -> str:
    """``text``, shortened word by word until it fits the prompt alone (small contexts)."""
    words = text.split()
    while len(words) > 1:
        try:
            chat.build_prompt([Turn("user", " ".join(words))])
            break
        except PromptTooLongError:
            words = words[:-1]
    return " ".join(words)


def rss_mb() -> float:
    """Resident memory of this process now, in MB (VmRSS from /proc, else the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def live_tensors() -> int:
    import torch

    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def file_mb(path: Path) -> float:
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persona", default="starter", help="an id, a folder, or 'tiny'")
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--every", type=int, default=50, help="turns between rows of figures")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="reply budget in tokens (default: the persona's)")
    parser.add_argument("--context-tokens", type=int, default=None,
                        help="cap the model's context (the budget bites sooner, turns cost less)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after this much time spent on turns")
    parser.add_argument("--device", default="cpu", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-heap", action="store_true",
                        help="skip tracemalloc (it slows Python; its own records add to RSS)")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # fit() measures over-long texts on purpose
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="long-session-"))
    if args.persona == "tiny":
        from tests.tiny_models import build_tiny_dialogpt

        persona = load_persona(build_tiny_dialogpt(tmp / "tiny"))
    else:
        persona = find_persona(args.persona)
    if args.context_tokens:
        persona = dataclasses.replace(persona, context_tokens=args.context_tokens)
    started = time.perf_counter()
    chat = LocalChat.load(persona, device=args.device, max_new_tokens=args.max_new_tokens)
    load_s = time.perf_counter() - started
    limit = chat.loaded.context_tokens - chat.decoding.max_new_tokens
    messages = [fit(chat, m) for m in user_messages(args.turns)]

    prompt_sizes: list[int] = []  # of the ids the model is actually given, every call
    turns_used = [0]  # how many turns the newest prompt holds
    generate, build_prompt = chat.generate, chat.build_prompt

    def generate_spy(prompt_ids, cancel, decoding=None):
        prompt_sizes.append(len(prompt_ids))
        return generate(prompt_ids, cancel, decoding)

    def build_prompt_spy(history):
        prompt = build_prompt(history)
        turns_used[0] = prompt.turns_used
        return prompt

    chat.generate, chat.build_prompt = generate_spy, build_prompt_spy
    db = tmp / "long_session.sqlite3"
    store = ConversationStore(db)
    session = ChatSession(store, chat, persona.id)
    print(f"{persona.label} on {chat.device} ({torch.get_num_threads()} threads, torch "
          f"{torch.__version__}), loaded in {load_s:.1f} s; context {chat.loaded.context_tokens} "
          f"tokens, reply budget {chat.decoding.max_new_tokens}, prompt limit {limit}; "
          f"{args.turns} turns")
    print(f"{'turn':>5} {'RSS MB':>8} {'py heap MB':>10} {'tensors':>8} {'prompt':>7} "
          f"{'limit':>6} {'turns in':>8} {'db MB':>6} {'wal MB':>6} {'ms/turn':>8}")

    rss: dict[int, float] = {}
    prompt_at: dict[int, int] = {}  # the newest prompt's size at each row
    failed = 0
    window_start = time.perf_counter()
    window_turns = 0
    if not args.no_heap:
        tracemalloc.start()
    began = time.perf_counter()
    turn = 0
    for turn, message in enumerate(messages, start=1):
        try:
            for _ in session.send(message):
                pass
        except TalkError as err:  # e.g. two echoes in a row: the turn is stored without reply
            failed += 1
            print(f"turn {turn}: {err.code}: {err.message}")
        window_turns += 1
        out_of_time = (args.max_minutes is not None
                       and time.perf_counter() - began > args.max_minutes * 60)
        if turn % args.every == 0 or turn == len(messages) or out_of_time:
            ms = (time.perf_counter() - window_start) / window_turns * 1000
            gc.collect()
            rss[turn] = rss_mb()
            prompt_at[turn] = prompt_sizes[-1] if prompt_sizes else 0
            heap = tracemalloc.get_traced_memory()[0] / 1e6 if not args.no_heap else float("nan")
            print(f"{turn:>5} {rss[turn]:>8.1f} {heap:>10.2f} {live_tensors():>8} "
                  f"{prompt_at[turn]:>7} {limit:>6} {turns_used[0]:>8} "
                  f"{file_mb(db):>6.2f} {file_mb(db.with_name(db.name + '-wal')):>6.2f} "
                  f"{ms:>8.0f}", flush=True)
            window_start, window_turns = time.perf_counter(), 0
        if out_of_time:
            break
    tracemalloc.stop()

    stored = len(store.turns(session.conversation_id))
    over_limit = sum(size > limit for size in prompt_sizes)
    print(f"{turn} turns in {(time.perf_counter() - began) / 60:.1f} min; {stored} messages "
          f"stored; {failed} failed turns; {over_limit} prompts over the limit; largest prompt "
          f"{max(prompt_sizes, default=0)} tokens of {limit}")
    first = 50 if 50 in rss else min(rss, default=0)
    if rss and turn != first:
        print(f"RSS growth from turn {first} to turn {turn}: {rss[turn] - rss[first]:+.1f} MB "
              f"({(rss[turn] - rss[first]) * 1024 / (turn - first):+.1f} KB/turn; prompt "
              f"{prompt_at[first]} -> {prompt_at[turn]} tokens); peak RSS {peak_rss_mb():.0f} MB")
    store.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
