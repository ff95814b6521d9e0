"""Chat engine overhead: the engine's streamed reply vs a raw ``model.generate``, one run.

Both sides get the same prompt ids and the same (greedy) settings, so they produce the same
tokens; runs alternate so machine noise hits both alike. Prints time to first token, tokens/s
and the engine/raw ratios (goal: total time ratio <= 1.05).

    .venv/bin/python benchmarks/chat.py [--persona starter] [--device auto] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.chat.local import LocalChat  # noqa: E402
from engine.chat.types import Turn  # noqa: E402
from engine.models.registry import find_persona  # noqa: E402

HISTORY = [
    Turn("user", "Hi! I just moved to a new city and I don't know anyone yet."),
    Turn("assistant", "That sounds exciting and a bit lonely. What made you move?"),
    Turn("user", "A new job. Can you suggest a few ways to meet people and make friends?"),
]


class _FirstTokenClock:
    """A minimal streamer for the raw side: notes when the first new token arrives."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first puts the prompt
            self.prompt_seen = True
        elif self.first is None:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def raw_run(chat: LocalChat, ids: list[int]) -> tuple[float, float, int]:
    import torch

    model, tok = chat.loaded.model, chat.loaded.tokenizer
    input_ids = torch.tensor([ids], device=chat.device)
    clock = _FirstTokenClock()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                             streamer=clock, **chat.decoding.generate_kwargs())
    if chat.device == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    return (clock.first or start) - start, total, out.shape[1] - input_ids.shape[1]


def engine_run(chat: LocalChat) -> tuple[float, float, str]:
    start = time.perf_counter()
    first = None
    pieces = []
    for piece in chat.stream_reply(HISTORY):
        if first is None:
            first = time.perf_counter()
        pieces.append(piece)
    total = time.perf_counter() - start
    return (first or start) - start, total, "".join(pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persona", default="starter")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    chat = LocalChat.load(find_persona(args.persona), device=args.device, do_sample=False,
                          max_new_tokens=args.max_new_tokens)
    load_s = time.perf_counter() - started
    # The same prompt is asked again and again here; the engine would answer it from the KV
    # cache it keeps between turns (benchmarks/kv_reuse.py measures that), which is not the
    # overhead this benchmark compares.
    chat.reuse_kv_cache = False
    prompt = chat.build_prompt(HISTORY)
    print(f"persona {chat.persona.label} on {chat.device} "
          f"({torch.get_num_threads()} threads, torch {torch.__version__}); loaded in "
          f"{load_s:.1f} s; prompt {len(prompt.ids)} tokens; up to {args.max_new_tokens} new")

    raw_run(chat, prompt.ids)  # warm-up both paths
    engine_run(chat)
    raw_ttft, raw_total, eng_ttft, eng_total = [], [], [], []
    n_tokens = 0
    for _ in range(args.runs):
        ttft, total, n_tokens = raw_run(chat, prompt.ids)
        raw_ttft.append(ttft)
        raw_total.append(total)
        ttft, total, text = engine_run(chat)
        eng_ttft.append(ttft)
        eng_total.append(total)

    def row(name: str, ttft: list[float], total: list[float]) -> None:
        med = statistics.median(total)
        print(f"{name:<8} first token {statistics.median(ttft) * 1000:7.1f} ms   "
              f"reply {med * 1000:7.1f} ms   {n_tokens / med:6.1f} tokens/s")

    print(f"median of {args.runs} alternating runs, {n_tokens} new tokens each:")
    row("raw", raw_ttft, raw_total)
    row("engine", eng_ttft, eng_total)
    print(f"overhead ratio engine/raw: total time "
          f"{statistics.median(eng_total) / statistics.median(raw_total):.3f}x "
          f"(goal <= 1.05x), first token "
          f"{statistics.median(eng_ttft) / statistics.median(raw_ttft):.3f}x")
    print(f"reply: {text.strip()[:200]!r}")


if __name__ == "__main__":
    main()
