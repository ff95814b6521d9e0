"""Decoding settings: one frozen dataclass, validated in one place.

Personas (``engine.models``) carry them and the chat backends (``engine.chat``) use them, so
they live beside both rather than inside either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engine.errors import PersonaError


@dataclass(frozen=True)
class DecodingOptions:
    """How a reply is sampled. Personas set these; a caller may override any field."""

    do_sample: bool = True  # False: greedy decoding, deterministic
    temperature: float = 0.8  # > 0; lower is more conservative
    top_k: int = 50  # 0 disables top-k filtering
    top_p: float = 0.95  # nucleus sampling mass, in (0, 1]
    repetition_penalty: float = 1.2  # >= 1; DialoGPT repeats itself without it
    no_repeat_ngram_size: int = 3  # 0 disables; local backend only (TGI has no such option)
    max_new_tokens: int = 64  # reply length budget, in tokens

    def __post_init__(self) -> None:
        checks = {
            "temperature": self.temperature > 0,
            "top_k": self.top_k >= 0,
            "top_p": 0 < self.top_p <= 1,
            "repetition_penalty": self.repetition_penalty >= 1,
            "no_repeat_ngram_size": self.no_repeat_ngram_size >= 0,
            "max_new_tokens": 1 <= self.max_new_tokens <= 4096,
        }
        for name, ok in checks.items():
            if not ok:
                raise PersonaError(
                    f"Decoding setting '{name}' has an invalid value: {getattr(self, name)!r}.",
                    hint="See the decoding settings in the README.",
                )

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "decoding") -> DecodingOptions:
        """Build from JSON, naming the offending field on a bad key or type."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in fields:
                raise PersonaError(
                    f"Unknown field '{where}.{key}'.",
                    hint=f"Known decoding fields: {', '.join(fields)}.",
                )
            expected = type(getattr(cls(), key))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not expected:
                raise PersonaError(
                    f"Field '{where}.{key}' must be {expected.__name__}, "
                    f"not {type(value).__name__}."
                )
            kwargs[key] = value
        return cls(**kwargs)

    def replace(self, **overrides: Any) -> DecodingOptions:
        """Return a copy with ``overrides`` applied (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def generate_kwargs(self) -> dict[str, Any]:
        """Arguments for transformers' ``generate``."""
        kwargs: dict[str, Any] = {
            "do_sample": self.do_sample,
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        else:
            # Unset the sampling knobs so transformers does not warn they are ignored.
            kwargs.update(temperature=None, top_k=None, top_p=None)
        return kwargs

    def tgi_parameters(self) -> dict[str, Any]:
        """Parameters of the TGI ``generate`` API (``no_repeat_ngram_size`` has no TGI twin)."""
        params: dict[str, Any] = {
            "do_sample": self.do_sample,
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            params["temperature"] = self.temperature
            if self.top_p < 1:  # TGI rejects top_p == 1.0
                params["top_p"] = self.top_p
            if self.top_k:
                params["top_k"] = self.top_k
        return params

    def openai_parameters(self, *, extras: bool = True) -> dict[str, Any]:
        """Fields of an OpenAI-compatible completions request (``no_repeat_ngram_size``: none).

        ``extras`` adds ``top_k`` and ``repetition_penalty``, which vLLM, SGLang and TGI read
        beyond the OpenAI schema. Strict servers (transformers serve, OpenAI itself) refuse
        unknown fields; without extras the repetition penalty goes as ``frequency_penalty =
        repetition_penalty - 1``: transformers serve turns that back into exactly this
        repetition penalty, and OpenAI-style engines apply it as a mild, similar penalty. No
        ``stop``: engines end at the model's EOS token, which is where a DialoGPT turn ends.
        """
        params: dict[str, Any] = {"max_tokens": self.max_new_tokens}
        if self.do_sample:
            params["temperature"] = self.temperature
            params["top_p"] = self.top_p
        else:
            params["temperature"] = 0.0  # greedy in every OpenAI-style engine
        if extras:
            params["repetition_penalty"] = self.repetition_penalty
            if self.do_sample and self.top_k:
                params["top_k"] = self.top_k
        elif self.repetition_penalty > 1:
            # Rounded: 1.1 - 1 is 0.10000000000000009 in floats, and 1 + that is not 1.1 again.
            # 2.0 is the most the OpenAI API accepts.
            params["frequency_penalty"] = min(round(self.repetition_penalty - 1, 6), 2.0)
        return params
