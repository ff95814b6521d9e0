"""KV cache reuse between turns: time to first token with and without it, side by side.

A conversation grows turn by turn; at every turn the same prompt is answered twice by the same
loaded model, once re-reading the whole prompt (reuse off) and once prefilling only what the
previous turn's cache lacks (reuse on), in alternating order so machine noise hits both alike.
Greedy decoding, so both must write the same reply (mismatches are counted and printed).
"First token" is the start of the reply to the end of the model's first forward pass (the
prefill, which yields the first token). Each turn's figure is the median over ``--runs`` fresh
conversations; the p50 is over turns 2..N (turn 1 has nothing cached).

Models: ``starter`` (the real SmolLM2-135M persona), ``tiny`` (the tests' random DialoGPT with
a 1024-token context) and ``shape`` (DialoGPT-medium's GPT-2 shape with random weights: speed
only, its words mean nothing).

    .venv/bin/python benchmarks/kv_reuse.py [--models starter,tiny,shape] [--turns 8]
        [--history 0] [--runs 3] [--max-new-tokens N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.chat.local import LocalChat  # noqa: E402
from engine.chat.types import Turn  # noqa: E402

USER_LINES = [
    "Hi! I just moved to a new city and I don't know anyone yet.",
    "A new job. Can you suggest a few ways to meet people and make friends?",
    "I like climbing and board games. Which of those is better for meeting people?",
    "How often should I go before people start to recognise me?",
    "What do I say to someone I have seen a few times but never talked to?",
    "And if they seem busy, should I leave it for another day?",
    "Thanks. Can you sum up your advice in three short points?",
    "One more thing: how do I keep in touch without being pushy?",
]
# Earlier exchanges a conversation may start from (--history), so prompts can start long.
EARLIER = [
    ("What is a good breakfast before a long hike?",
     "Oats with fruit and nuts, and plenty of water: slow energy that lasts."),
    ("Should I bring snacks as well?",
     "Yes: trail mix, a banana or a sandwich for every two or three hours of walking."),
    ("How do I avoid blisters?",
     "Wear boots you have broken in, wool socks, and tape hot spots as soon as you feel them."),
]


class FirstForward:
    """Notes when the model's first forward pass after ``arm()`` ends (the prefill)."""

    def __init__(self, model) -> None:
        self.ended: float | None = None
        self.handle = model.register_forward_hook(self._done)

    def arm(self) -> None:
        """Watch for the next forward pass."""
        self.ended = None

    def _done(self, module, args, output) -> None:
        if self.ended is None:
            self.ended = time.perf_counter()


def timed_reply(chat: LocalChat, history: list[Turn], clock: FirstForward):
    """(first token s, whole reply s, reply text, tokens reused from the cache)."""
    clock.arm()
    start = time.perf_counter()
    text = chat.reply(history)
    total = time.perf_counter() - start
    return (clock.ended or start) - start, total, text, chat.kv_reused_tokens


def bench(label: str, chat: LocalChat, turns: int, history_pairs: int, runs: int) -> None:
    """Run the conversation with reuse off and on; print each turn's medians as it ends.

    ``runs`` pairs of fresh chats (each with its own cache) answer every turn, so a turn's
    figure is a median over ``runs`` replies each way, printed as soon as the turn is done.
    """
    import torch

    print(f"\n== {label}: {type(chat.loaded.model).__name__} on {chat.device}, "
          f"context {chat.loaded.context_tokens}, up to {chat.decoding.max_new_tokens} new "
          f"tokens, greedy={not chat.decoding.do_sample}, {torch.get_num_threads()} threads, "
          f"median of {runs} runs per turn", flush=True)
    clock = FirstForward(chat.loaded.model)
    pairs = []
    for _ in range(runs):
        plain = LocalChat(chat.persona, chat.loaded, chat.decoding)
        plain.reuse_kv_cache = False
        pairs.append((plain, LocalChat(chat.persona, chat.loaded, chat.decoding)))
    history: list[Turn] = []
    for i in range(history_pairs):
        question, answer = EARLIER[i % len(EARLIER)]
        history += [Turn("user", question), Turn("assistant", answer)]
    # Warm-up on the first prompt (the first calls of a size allocate); its cache is not used.
    chat.reply(history + [Turn("user", USER_LINES[0])])
    print(f"{'turn':>4} {'prompt':>6} {'reused':>6} {'first token off':>16} {'on':>8} "
          f"{'on/off':>7} {'reply off':>10} {'on':>8}  same", flush=True)
    off_first, on_first, off_total, on_total = [], [], [], []
    mismatches = 0
    for turn in range(turns):
        history.append(Turn("user", USER_LINES[turn % len(USER_LINES)]))
        prompt_len = len(chat.build_prompt(history).ids)
        cells = []
        for run, (plain, reusing) in enumerate(pairs):
            order = (plain, reusing) if (turn + run) % 2 == 0 else (reusing, plain)
            results = {id(c): timed_reply(c, history, clock) for c in order}
            cells.append((results[id(plain)], results[id(reusing)]))
        reused = cells[0][1][3]
        first = [statistics.median(c[k][0] for c in cells) for k in (0, 1)]
        total = [statistics.median(c[k][1] for c in cells) for k in (0, 1)]
        same = all(off[2] == on[2] for off, on in cells)
        mismatches += not same
        if turn:  # turn 1 has nothing cached: it is left out of the p50s
            off_first.append(first[0])
            on_first.append(first[1])
            off_total.append(total[0])
            on_total.append(total[1])
        print(f"{turn + 1:>4} {prompt_len:>6} {reused:>6} {first[0] * 1000:>13.1f} ms "
              f"{first[1] * 1000:>5.1f} ms {first[1] / first[0]:>6.2f}x {total[0] * 1000:>7.0f} ms "
              f"{total[1] * 1000:>5.0f} ms  {'yes' if same else 'NO'}", flush=True)
        history.append(Turn("assistant", cells[0][0][2]))
    clock.handle.remove()
    if not off_first:
        return
    off_p50, on_p50 = statistics.median(off_first), statistics.median(on_first)
    print(f"p50 first token, turns 2-{turns}: off {off_p50 * 1000:.1f} ms, on "
          f"{on_p50 * 1000:.1f} ms, ratio on/off {on_p50 / off_p50:.2f}x; whole reply p50 off "
          f"{statistics.median(off_total) * 1000:.0f} ms, on "
          f"{statistics.median(on_total) * 1000:.0f} ms; "
          f"turns whose replies differ: {mismatches} of {turns}", flush=True)


def tiny_chat(folder: Path, max_new_tokens: int | None) -> LocalChat:
    from engine.models.persona import load_persona
    from engine.models.tiny import build_tiny_dialogpt

    built = build_tiny_dialogpt(folder / "tiny", n_positions=1024)
    return LocalChat.load(load_persona(built), device="cpu", max_new_tokens=max_new_tokens)


def shape_true_chat(folder: Path, max_new_tokens: int | None) -> LocalChat:
    """DialoGPT-medium's shape (GPT-2, 1024 wide, 24 layers, 16 heads, 50257 tokens), random.

    The tiny persona's tokenizer knows only its first few hundred ids, so every other
    embedding row is zeroed (logit 0, below the best known word): greedy decoding then writes
    decodable tokens while every matrix keeps the real size.
    """
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from engine.models.device import Placement
    from engine.models.loader import LoadedModel
    from engine.models.persona import load_persona
    from engine.models.tiny import build_tiny_dialogpt

    built = build_tiny_dialogpt(folder / "shape", n_positions=1024)
    tokenizer = AutoTokenizer.from_pretrained(built)
    eos = tokenizer.eos_token_id
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=1024, n_layer=24, n_head=16,
                        bos_token_id=eos, eos_token_id=eos)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        known = model.transformer.wte.weight[:len(tokenizer)].clone()
        model.transformer.wte.weight.zero_()
        for token_id in range(len(tokenizer)):
            text = tokenizer.decode([token_id])
            if token_id != eos and text.strip() and all(c.isascii() and (c.isalnum() or c == " ")
                                                        for c in text):
                model.transformer.wte.weight[token_id] = known[token_id]
    persona = load_persona(built)
    loaded = LoadedModel(model, tokenizer, Placement("cpu", torch.float32), 1024)
    return LocalChat(persona, loaded, persona.decoding.replace(max_new_tokens=max_new_tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="starter,tiny,shape")
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--history", type=int, default=0,
                        help="earlier exchanges the conversation starts from")
    parser.add_argument("--runs", type=int, default=3,
                        help="conversations per model; each turn's figure is their median")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="reply length (default: the persona's)")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from engine.models.registry import find_persona

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            if name == "starter":
                chat = LocalChat.load(find_persona("starter"), device="cpu", do_sample=False,
                                      max_new_tokens=args.max_new_tokens)
                bench("starter (SmolLM2-135M-Instruct, real weights)", chat, args.turns,
                      args.history, args.runs)
            elif name == "tiny":
                bench("tiny random DialoGPT (1024 context)",
                      tiny_chat(Path(tmp), args.max_new_tokens), args.turns, args.history,
                      args.runs)
            elif name == "shape":
                bench("shape-true (random weights): speed only - DialoGPT-medium GPT-2 shape",
                      shape_true_chat(Path(tmp), args.max_new_tokens), args.turns,
                      args.history, args.runs)
            else:
                parser.error(f"unknown model {name!r} (starter, tiny, shape)")
    print(f"\nload average after: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
