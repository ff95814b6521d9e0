"""Compare a fine-tune with its base: validation perplexity and the shape of sample replies.

Perplexity is measured on the run's validation set with the training loss mask (context turns
excluded), for both models. Replies to fixed prompts are decoded greedily with no repetition
guards, so the figures describe the model rather than the decoding settings:

- distinct-1 / distinct-2: unique words / word pairs over all words / pairs of all replies;
- repetition rate: share of word trigrams that repeat an earlier trigram of the same reply;
- echo rate: share of replies that only repeat the prompt (engine.chat.echo.is_echo);
- empty rate: share of replies with no text.

Writes ``<run>/eval.json``. A ``progress`` callback hears each phase as it goes (loading a
model, scoring the validation set batch by batch, writing each sample reply), so a person
watching sees what the minutes are spent on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from engine.chat.echo import is_echo, normalise
from training.encode import IGNORE_INDEX, Collator, Mask, encode_all, pad_token_id, read_instances
from training.errors import TrainingError

EVAL_FILE = "eval.json"
DEFAULT_PROMPTS = (
    "Hi, how are you?",
    "What did you do today?",
    "Any tips for someone new here?",
    "Where is the best place to eat around here?",
    "I can't decide what to study.",
    "Do you like it here?",
    "What do you think about the weather lately?",
    "Tell me something funny.",
)
_BATCH = 8  # validation dialogues per forward pass
# The phases ``progress`` reports, as the terminal shows them ("3/8 scoring ... (base)").
_PHASES = {"load": "loading", "score": "scoring the validation set",
           "reply": "writing sample replies"}
Progress = Callable[[dict[str, Any]], None]


def evaluate(run_dir: str | Path, *, base_model: str | None = None,
             finetuned_dir: str | Path | None = None, prompts: Sequence[str] = DEFAULT_PROMPTS,
             max_new_tokens: int = 30, max_examples: int | None = 500, device: str = "auto",
             seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate a run's fine-tune against its base model and write ``eval.json``.

    Args:
        run_dir: the run folder (its config.json gives the base, mask and token limit).
        base_model: the base to compare with; defaults to the run's.
        finetuned_dir: weights or LoRA adapter to evaluate; defaults to ``<run>/final``.
        prompts: user turns to reply to (one reply each, per model).
        max_new_tokens: reply length limit, in tokens.
        max_examples: validation dialogues used at most (None: all).
        device: "auto", "cuda" or "cpu".
        seed: seeds torch before each generation (greedy decoding needs none; kept for parity).
        progress: called with ``phase`` ("load", "score" or "reply"), ``model`` ("base" or
            "finetuned"), ``done`` and ``total`` (batches scored, replies written) and a
            ``title`` as each phase starts and moves on.

    Returns:
        The report written to ``eval.json``.

    """
    import torch

    from engine.models.device import resolve
    from training.base import load_model, load_tokenizer, prompt_style, resolve_base
    from training.train import CONFIG_FILE, FINAL_DIR, TrainConfig

    run = Path(run_dir).expanduser().resolve()
    config = TrainConfig.load(run / CONFIG_FILE) if (run / CONFIG_FILE).is_file() else None
    base_ref = base_model or (config.base_model if config else None)
    if not base_ref:
        raise TrainingError(f"{run} has no config.json; pass the base model to compare with.")
    tuned = Path(finetuned_dir).expanduser() if finetuned_dir else run / FINAL_DIR
    if not (tuned / "config.json").is_file() and not (tuned / "adapter_config.json").is_file():
        raise TrainingError(f"No trained weights at {tuned}.", hint="Run the train stage first.")
    # TrainConfig checks that its mask is one of MASKS.
    mask = cast(Mask, config.mask) if config else "responses"
    max_tokens = config.max_tokens if config else 256
    dataset_dir = config.dataset_dir if config else run / "dataset"
    placement = resolve(device)

    base = resolve_base(base_ref)
    tokenizer = load_tokenizer(base)
    style = prompt_style(base, tokenizer)  # the layout the persona is trained and fed in
    examples = encode_all(read_instances(dataset_dir / "validation.jsonl"), tokenizer,
                          max_tokens=max_tokens, mask=mask,
                          prompt_format=style[0], system_prompt=style[1])
    if max_examples is not None:
        examples = examples[:max_examples]
    if not examples:
        raise TrainingError("The validation set has no dialogue with a reply to score.",
                            hint="Check the dataset stage's output.")

    report = _reporter(progress, "base")
    report("load", 0, 1)
    model = load_model(base, dtype=placement.dtype).to(placement.device).eval()
    base_side = _measure(model, tokenizer, examples, prompts, max_new_tokens, seed, style,
                         report)
    report = _reporter(progress, "finetuned")
    report("load", 0, 1)
    if (tuned / "adapter_config.json").is_file():
        from peft import PeftModel

        # The base's measurements are taken; its weights can now take the adapter in place.
        model = PeftModel.from_pretrained(model, tuned).merge_and_unload()
    else:
        del model
        model = load_model(resolve_base(str(tuned)), dtype=placement.dtype)
    model = model.to(placement.device).eval()
    tuned_side = _measure(model, tokenizer, examples, prompts, max_new_tokens, seed, style,
                          report)
    del model
    if placement.device == "cuda":
        torch.cuda.empty_cache()

    figures = {
        "perplexity": {"base": base_side["perplexity"], "finetuned": tuned_side["perplexity"]},
        "validation": {"examples": len(examples), "tokens": base_side["tokens"], "mask": mask,
                       "max_tokens": max_tokens},
        "base": base_side["replies"],
        "finetuned": tuned_side["replies"],
        "samples": [{"prompt": p, "reply": r, "base_reply": b} for p, r, b in
                    zip(prompts, tuned_side["texts"], base_side["texts"], strict=True)],
        "decoding": {"greedy": True, "max_new_tokens": max_new_tokens},
        "prompt_format": style[0],
        "base_model": base_ref,
        "finetuned_dir": str(tuned),
    }
    _write_json(run / EVAL_FILE, figures)
    return figures


def _reporter(progress: Progress | None, model: str) -> Callable[[str, int, int], None]:
    """``report(phase, done, total)`` for one model's side; does nothing without ``progress``."""
    def report(phase: str, done: int, total: int) -> None:
        if progress is not None:
            progress({"phase": phase, "model": model, "done": done, "total": total,
                      "title": f"{_PHASES[phase]} ({model})"})
    return report


def _measure(model: Any, tokenizer: Any, examples: list[tuple[list[int], list[int]]],
             prompts: Sequence[str], max_new_tokens: int, seed: int,
             style: tuple[str, str | None],
             report: Callable[[str, int, int], None]) -> dict[str, Any]:
    nll, tokens = _nll(model, tokenizer, examples, report)
    texts = []
    for done, prompt in enumerate(prompts):
        report("reply", done, len(prompts))
        texts.append(_reply(model, tokenizer, prompt, max_new_tokens, seed, style))
    report("reply", len(prompts), len(prompts))
    return {"perplexity": math.exp(nll / tokens) if tokens else None, "tokens": tokens,
            "texts": texts, "replies": reply_metrics(prompts, texts)}


def _nll(model: Any, tokenizer: Any, examples: list[tuple[list[int], list[int]]],
         report: Callable[[str, int, int], None] | None = None) -> tuple[float, int]:
    """Summed negative log-likelihood of the labelled tokens, and how many there are."""
    import torch
    import torch.nn.functional as F

    collate = Collator(pad_token_id(tokenizer))
    device = next(model.parameters()).device
    total, count = 0.0, 0
    batches = math.ceil(len(examples) / _BATCH)
    with torch.inference_mode():
        for start in range(0, len(examples), _BATCH):
            if report is not None:
                report("score", start // _BATCH, batches)
            batch = {k: v.to(device) for k, v in collate(examples[start:start + _BATCH]).items()}
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits.float()
            labels = batch["labels"][:, 1:]
            total += F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                     labels.reshape(-1), ignore_index=IGNORE_INDEX,
                                     reduction="sum").item()
            count += int((labels != IGNORE_INDEX).sum())
    if report is not None:
        report("score", batches, batches)
    return total, count


def _reply(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int, seed: int,
           style: tuple[str, str | None] = ("dialogpt", None)) -> str:
    """A greedy reply to ``prompt``, built exactly as the engine builds a persona's prompt."""
    import torch

    from engine.chat.prompt import PromptFormat, build_prompt
    from engine.chat.types import Turn

    torch.manual_seed(seed)
    device = next(model.parameters()).device
    # style comes from prompt_style, which gives a persona's checked format or one of the two.
    ids = build_prompt(tokenizer, [Turn("user", prompt)],
                       prompt_format=cast(PromptFormat, style[0]),
                       context_tokens=1 << 20, reply_tokens=max_new_tokens,
                       system_prompt=style[1]).ids
    input_ids = torch.tensor([ids], device=device)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=pad_token_id(tokenizer),
                             eos_token_id=tokenizer.eos_token_id, repetition_penalty=1.0,
                             temperature=None, top_k=None, top_p=None)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()


def reply_metrics(prompts: Sequence[str], replies: Sequence[str]) -> dict[str, float]:
    """Distinct-1/2, repetition, echo and empty rates of ``replies`` to ``prompts``."""
    words = [normalise(reply).split() for reply in replies]
    ngrams = {n: [tuple(w[i:i + n]) for w in words for i in range(len(w) - n + 1)]
              for n in (1, 2)}
    repeated = trigrams = 0
    for w in words:
        seen: set[tuple[str, ...]] = set()
        for i in range(len(w) - 2):
            gram = tuple(w[i:i + 3])
            repeated += gram in seen
            seen.add(gram)
            trigrams += 1
    count = max(len(replies), 1)
    return {
        "distinct_1": _ratio(len(set(ngrams[1])), len(ngrams[1])),
        "distinct_2": _ratio(len(set(ngrams[2])), len(ngrams[2])),
        "repetition_rate": _ratio(repeated, trigrams),
        "echo_rate": sum(is_echo(r, p) for p, r in zip(prompts, replies, strict=True)) / count,
        "empty_rate": sum(not w for w in words) / count,
        "mean_words": sum(map(len, words)) / count,
    }


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from engine.fsutil import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
