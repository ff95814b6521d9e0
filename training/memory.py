"""A rough training-memory estimate, so the app can warn before a run that cannot fit.

Bytes = weights + gradients + AdamW's two moments + activations + logits. Activations follow
Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models"): about
``s*b*h*(34 + 5*a*s/h)`` bytes per layer in 16-bit, i.e. ``17*h + 2.5*a*s`` values per token;
gradient checkpointing keeps only each layer's input plus one layer being recomputed. It is an
estimate (allocator slack and the CUDA context are not in it); benchmarks/train.py measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

# Allocator fragmentation and temporaries the formula does not name.
_SLACK = 1.10


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that memory depends on."""

    n_layer: int
    hidden: int
    n_head: int
    vocab: int = 50257  # GPT-2 / DialoGPT


def shape_of(hf_config: Any) -> ModelShape:
    """The shape of a transformers config (GPT-2 or Llama-style names)."""
    get = lambda *names: next(  # noqa: E731
        (getattr(hf_config, n) for n in names if getattr(hf_config, n, None)), None)
    return ModelShape(
        n_layer=int(get("n_layer", "num_hidden_layers") or 12),
        hidden=int(get("n_embd", "hidden_size") or 768),
        n_head=int(get("n_head", "num_attention_heads") or 12),
        vocab=int(get("vocab_size") or 50257),
    )


def guess_shape(n_params: int) -> ModelShape:
    """A GPT-2-like shape with about ``n_params`` parameters (hidden ~ 40 x layers)."""
    n_layer = max(1, round((n_params / (12 * 1600)) ** (1 / 3)))
    hidden = max(64, 64 * round(40 * n_layer / 64))
    return ModelShape(n_layer=n_layer, hidden=hidden, n_head=max(1, hidden // 64))


def lora_params(shape: ModelShape, r: int) -> int:
    """Trainable LoRA weights: about 11*r*h per layer on GPT-2's c_attn and c_proj layers."""
    return 11 * r * shape.hidden * shape.n_layer


class RunSettings(Protocol):
    """The settings of a run that memory depends on; ``training.train.TrainConfig`` has them.

    A protocol rather than ``TrainConfig`` itself, so that this module imports nothing of
    the trainer and the trainer can use it without an import cycle.
    """

    # Properties, so that the frozen (read-only) TrainConfig matches.
    @property
    def method(self) -> str:
        """Full weights or a LoRA adapter: "full" or "lora"."""

    @property
    def lora_r(self) -> int:
        """The LoRA rank."""

    @property
    def precision(self) -> str:
        """The precision: "auto", "fp32", "fp16" or "bf16"."""

    @property
    def device(self) -> str:
        """Where it runs: "auto", "cuda" or "cpu"."""

    @property
    def batch_size(self) -> int:
        """Dialogues per forward pass."""

    @property
    def max_tokens(self) -> int:
        """The longest training sequence, in tokens."""

    @property
    def gradient_checkpointing(self) -> bool:
        """Whether activations are recomputed in the backward pass."""


def estimate_memory(config: RunSettings, n_params: int, *, shape: ModelShape | None = None,
                    on_cuda: bool | None = None) -> int:
    """Rough peak bytes to train ``config`` on a model of ``n_params`` parameters.

    Args:
        config: the run's settings (method, precision, batch size, max_tokens, checkpointing).
        n_params: parameters of the base model.
        shape: its layer sizes; guessed from ``n_params`` when not given.
        on_cuda: whether it runs on a GPU (half precision when ``precision`` is auto); None:
            from ``config.device`` (auto asks torch whether CUDA is available).

    """
    shape = shape or guess_shape(n_params)
    if on_cuda is None:
        on_cuda = config.device == "cuda"
        if config.device == "auto":
            import torch

            on_cuda = torch.cuda.is_available()
    half = config.precision in ("fp16", "bf16") or (config.precision == "auto" and on_cuda)
    lora = config.method == "lora"
    trainable = lora_params(shape, config.lora_r) if lora else n_params
    # LoRA keeps the frozen base in 16-bit under mixed precision; full training keeps fp32
    # master weights and autocast makes 16-bit copies of them for the matmuls.
    weights = n_params * (2 if lora and half else 4) + (trainable * 4 if lora else 0)
    if half and not lora:
        weights += n_params * 2
    optimizer = trainable * (4 + 8)  # fp32 gradients, then AdamW's exp_avg and exp_avg_sq
    act_bytes = 2 if half else 4
    seq = config.max_tokens
    tokens = config.batch_size * seq
    per_layer = tokens * (17 * shape.hidden + 2.5 * shape.n_head * seq) * act_bytes
    if config.gradient_checkpointing:
        activations = shape.n_layer * tokens * shape.hidden * act_bytes + per_layer
    else:
        activations = shape.n_layer * per_layer
    logits = tokens * shape.vocab * 4 * 2  # float32 logits for the loss, and their gradient
    return int(math.ceil((weights + optimizer + activations + logits) * _SLACK))
