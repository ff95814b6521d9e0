"""A tiny random DialoGPT-shaped persona, built offline and saved like a real checkpoint.

The tests use it (it loads through the same persona loader as real models) and so does the
self-check (``talk-to-transformers-app --self-check``), which proves an install or a bundle can
tokenize, load and generate without a download. Random weights emit random text: callers assert
types, lengths and termination, not words.
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "hello there how are you today",
    "i am fine thanks and you",
    "what is the weather like in berkeley",
    "it is sunny and warm near the campus",
    "do you like music or movies more",
    "the quick brown fox jumps over the lazy dog",
] * 20


def build_tiny_dialogpt(folder: Path, *, n_positions: int = 128, decoding: dict | None = None,
                        name: str = "Tiny DialoGPT", n_layer: int = 2, n_embd: int = 64) -> Path:
    """A GPT-2 DialoGPT-shaped persona: byte-level BPE tokenizer + 2-layer GPT-2, safetensors."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers import decoders as tk_decoders

    # The ignore is for GPT2TokenizerFast: transformers 5 still exports it (its lazy module maps
    # every *TokenizerFast name to the one tokenizers-backed class) but no longer declares it
    # for type checkers; transformers 4 (still supported) needs this name for the fast one.
    from transformers import (  # type: ignore[attr-defined]
        GPT2Config,
        GPT2LMHeadModel,
        GPT2TokenizerFast,
    )

    folder.mkdir(parents=True, exist_ok=True)
    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk_decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[eos], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tokenizer = GPT2TokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=eos,
                                  unk_token=eos, model_max_length=n_positions)
    tokenizer.save_pretrained(folder)
    import torch

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_layer=n_layer,
                        n_embd=n_embd, n_head=2, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        # Random weights often pick EOS first (an empty reply), raw bytes (held back by the
        # streamer as partial UTF-8) or symbols (held back until the next space). A zero
        # embedding, tied to the output layer, gives logit 0, below the best random token: the
        # model then writes exactly max_new_tokens tokens of letters and spaces, which stream
        # token by token, so lengths and streaming become testable.
        for token_id in range(len(tokenizer)):
            text = tokenizer.decode([token_id])
            wordy = text.strip() and all(c.isascii() and (c.isalnum() or c == " ") for c in text)
            if token_id == tokenizer.eos_token_id or not wordy:
                model.transformer.wte.weight[token_id].zero_()
    model.save_pretrained(folder)
    persona = {
        "schema_version": 1,
        "name": name,
        "description": "Random weights, for tests.",
        "base_model": "microsoft/DialoGPT-small",
        "prompt_format": "dialogpt",
        "decoding": decoding or {"do_sample": False, "max_new_tokens": 12,
                                 "repetition_penalty": 1.0, "no_repeat_ngram_size": 0},
    }
    (folder / "persona.json").write_text(json.dumps(persona, indent=2), encoding="utf-8")
    return folder
