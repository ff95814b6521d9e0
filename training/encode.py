"""Dialogue instances as token ids and loss labels, and batches of them.

In the ``dialogpt`` layout an instance's turns become ``tok(turn_1) + eos + tok(turn_2) + eos
+ ...``; in the ``chat_template`` layout (a chat model such as the starter) they are messages
rendered by the tokenizer's chat template, the last one the assistant's and the roles
alternating back from it. Either is what the engine feeds the model at chat time
(engine.chat.prompt), so a fine-tuned persona sees at inference exactly what it was trained on.
Labels are the input ids with masked positions set to -100, which cross-entropy ignores; in the
chat layout a trained turn's labels cover its text and end marker, not the role header.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from training.errors import TrainingError

Mask = Literal["responses", "last", "none"]
MASKS: tuple[str, ...] = ("responses", "last", "none")
IGNORE_INDEX = -100  # label value cross-entropy skips


def encode_instance(
    turns: Sequence[str], tokenizer: Any, *, max_tokens: int, mask: Mask = "responses",
    prompt_format: str = "dialogpt", system_prompt: str | None = None,
) -> tuple[list[int], list[int]]:
    """Token ids and labels of one dialogue.

    Args:
        turns: the dialogue's utterances, oldest first (at least one).
        tokenizer: a transformers tokenizer with an EOS token.
        max_tokens: the longest sequence to return. The dataset stage already keeps instances
            within this limit; if one is still too long, its oldest turns are dropped (down to
            two), and then the oldest tokens, so the trained replies are what survives.
        mask: ``responses``: the first turn is context and every later turn (with its EOS) is
            trained (in the chat layout: every assistant turn); ``last``: only the final turn
            is trained; ``none``: every token is trained.
        prompt_format: ``dialogpt`` or ``chat_template`` (see :func:`training.base.prompt_style`).
        system_prompt: the chat layout's system message, as the persona will be given it.

    Returns:
        ``(input_ids, labels)`` of equal length; masked label positions are -100.

    """
    if mask not in MASKS:
        raise TrainingError(f"Unknown loss mask {mask!r}; use one of {', '.join(MASKS)}.")
    if not turns:
        raise TrainingError("A dialogue instance has no turns.")
    if prompt_format == "chat_template":
        return _encode_chat(turns, tokenizer, max_tokens=max_tokens, mask=mask,
                            system_prompt=system_prompt)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise TrainingError("The base model's tokenizer has no end-of-sequence token.")
    chunks = [tokenizer.encode(str(text), add_special_tokens=False) + [eos] for text in turns]
    while len(chunks) > 2 and sum(map(len, chunks)) > max_tokens:
        chunks.pop(0)
    input_ids: list[int] = []
    labels: list[int] = []
    last = len(chunks) - 1
    for index, chunk in enumerate(chunks):
        trained = mask == "none" or (mask == "responses" and index > 0) or index == last
        input_ids += chunk
        labels += chunk if trained else [IGNORE_INDEX] * len(chunk)
    if len(input_ids) > max_tokens:
        input_ids, labels = input_ids[-max_tokens:], labels[-max_tokens:]
    return input_ids, labels


def _encode_chat(turns: Sequence[str], tokenizer: Any, *, max_tokens: int, mask: Mask,
                 system_prompt: str | None) -> tuple[list[int], list[int]]:
    """The chat-template layout of :func:`encode_instance`.

    Each message's tokens are the difference between the rendering of the conversation up to
    it and up to the one before, so the sequence is exactly the template's rendering of the
    whole conversation; an assistant message's role header (the generation prompt) is context.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingError("The base model's tokenizer has no chat template.")
    turns = [str(t) for t in turns]
    if len(turns) % 2 and len(turns) > 1:
        turns = turns[1:]  # open with a user turn: some templates refuse anything else
    # The last turn is the persona's reply; a lone turn is context, as in the dialogpt layout.
    roles = ["user", "assistant"] * (len(turns) // 2) if len(turns) > 1 else ["user"]
    while len(turns) > 2 and len(_chat_ids(tokenizer, system_prompt, turns, roles)) > max_tokens:
        turns, roles = turns[2:], roles[2:]  # drop the oldest exchange, keep the alternation
    done = _chat_ids(tokenizer, system_prompt, [], [])  # the system message, if any
    input_ids, labels = list(done), [IGNORE_INDEX] * len(done)
    for index, role in enumerate(roles):
        upto = _chat_ids(tokenizer, system_prompt, turns[:index + 1], roles[:index + 1])
        if upto[:len(done)] != done:
            raise TrainingError("The base model's chat template does not render a conversation "
                                "as the start of a longer one, which training needs.",
                                code="chat_template_unsupported")
        context = len(upto)
        if role == "assistant":
            header = _chat_ids(tokenizer, system_prompt, turns[:index], roles[:index],
                               generation_prompt=True)
            # The header's tokens, as far as the reply's rendering shares them (a header that
            # ends in a space merges that space into the reply's first token).
            context = next((i for i, (a, b) in enumerate(zip(header, upto, strict=False))
                            if a != b), min(len(header), len(upto)))
            context = max(context, len(done))
        new = upto[len(done):]
        input_ids += new
        if mask == "none":
            labels += new
        elif role == "assistant" and (mask == "responses" or index == len(roles) - 1):
            labels += [IGNORE_INDEX] * (context - len(done)) + upto[context:]
        else:
            labels += [IGNORE_INDEX] * len(new)
        done = upto
    if len(input_ids) > max_tokens:
        input_ids, labels = input_ids[-max_tokens:], labels[-max_tokens:]
    return input_ids, labels


def _chat_ids(tokenizer: Any, system_prompt: str | None, turns: Sequence[str],
              roles: Sequence[str], *, generation_prompt: bool = False) -> list[int]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages += [{"role": r, "content": t} for r, t in zip(roles, turns, strict=True)]
    if not messages:
        return []
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt,
                                        tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # some versions return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


class Collator:
    """Pads a list of ``(input_ids, labels)`` into a batch of tensors.

    Padding goes on the right with ``pad_token_id`` (the EOS for GPT-2, which has no pad token);
    padded positions get attention mask 0 and label -100, so neither the loss nor attention sees
    them.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, batch: Sequence[tuple[list[int], list[int]]]) -> dict[str, Any]:
        """``input_ids``, ``attention_mask`` and ``labels``, each ``[batch, longest]``."""
        import torch

        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, labs) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            labels[row, : len(labs)] = torch.tensor(labs, dtype=torch.long)
            attention[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def pad_token_id(tokenizer: Any) -> int:
    """The id batches are padded with: the pad token, else EOS (GPT-2 has no pad token)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise TrainingError("The base model's tokenizer has neither a pad nor an EOS token.")
    return int(pad)


def read_instances(path: Path) -> list[list[str]]:
    """The ``turns`` of each line of a dataset JSONL file (``{"thread", "turns"}`` lines)."""
    if not path.is_file():
        raise TrainingError(f"No dataset file at {path}.", hint="Run the dataset stage first.")
    instances: list[list[str]] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TrainingError(f"{path.name}, line {number}: not valid JSON ({err.msg}).",
                                    hint="Re-run the dataset stage.") from err
            turns = record.get("turns") if isinstance(record, dict) else None
            if not isinstance(turns, list) or not turns or \
                    not all(isinstance(t, str) for t in turns):
                raise TrainingError(f"{path.name}, line {number}: 'turns' must be a non-empty "
                                    "list of strings.", hint="Re-run the dataset stage.")
            instances.append(turns)
    return instances


def encode_all(instances: Sequence[Sequence[str]], tokenizer: Any, *, max_tokens: int,
               mask: Mask, prompt_format: str = "dialogpt",
               system_prompt: str | None = None) -> list[tuple[list[int], list[int]]]:
    """Encode every instance; ones left with no trained token are dropped."""
    encoded = [encode_instance(t, tokenizer, max_tokens=max_tokens, mask=mask,
                               prompt_format=prompt_format, system_prompt=system_prompt)
               for t in instances]
    return [pair for pair in encoded if any(label != IGNORE_INDEX for label in pair[1])]
