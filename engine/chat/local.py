"""Chat backend that runs the persona's model in this process, through transformers.

A conversation's prompt grows by appending: each turn's prompt starts with the previous prompt
and reply. The attention keys and values (KV cache) of the last generation are therefore kept,
and the next reply prefills only the tokens after the longest common prefix of token ids, which
makes the first token of a long conversation much faster on a CPU. See :class:`_KVCache`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from engine.cancel import CancelToken
from engine.chat.echo import guarded_stream
from engine.chat.prompt import Prompt, build_prompt
from engine.chat.types import Turn
from engine.decoding import DecodingOptions
from engine.errors import ChatError, TalkError
from engine.models.loader import LoadedModel, load
from engine.models.persona import Persona

# How long the consumer waits for the next token before checking the generation thread is alive.
_TOKEN_POLL_S = 0.5
# A shared prefix shorter than this is prefilled again: reusing a few tokens saves nothing.
_MIN_REUSED_TOKENS = 8


class LocalChat:
    """A persona's model on this machine (CUDA fp16 when available, else CPU fp32)."""

    def __init__(self, persona: Persona, loaded: LoadedModel,
                 decoding: DecodingOptions | None = None):
        self.persona = persona
        self.loaded = loaded
        self.decoding = decoding or persona.decoding
        # Whether replies reuse the previous reply's KV cache (benchmarks/kv_reuse.py turns it
        # off to compare); kv_reused_tokens is how many prompt tokens the last reply reused.
        self.reuse_kv_cache = True
        self.kv_reused_tokens = 0
        self._kv = _KVCache()

    @classmethod
    def load(cls, persona: Persona, *, device: str = "auto", **overrides: Any) -> LocalChat:
        """Load ``persona``'s model; ``overrides`` replace decoding settings."""
        return cls(persona, load(persona, device), persona.decoding.replace(**overrides))

    @property
    def device(self) -> str:
        """Where the model runs ("cuda" or "cpu")."""
        return self.loaded.placement.device

    def build_prompt(self, history: Sequence[Turn]) -> Prompt:
        """The prompt for a reply to ``history``, within this model's context window."""
        return build_prompt(
            self.loaded.tokenizer,
            history,
            prompt_format=self.persona.prompt_format,
            context_tokens=self.loaded.context_tokens,
            reply_tokens=self.decoding.max_new_tokens,
            system_prompt=self.persona.system_prompt,
        )

    def reply(self, history: Sequence[Turn], *, cancel: CancelToken | None = None) -> str:
        """The whole reply (streamed internally, so cancel works the same way)."""
        return "".join(self.stream_reply(history, cancel=cancel)).strip()

    def stream_reply(
        self, history: Sequence[Turn], *, cancel: CancelToken | None = None, gate: Any = None
    ) -> Iterator[str]:
        """Yield text pieces as they are generated; an echo of the user is regenerated once.

        With a ``gate`` (the voice pipeline's), generation holds the device between decoding
        steps only, so speech synthesis can run in the gaps (see engine.pipeline.gate).
        """
        prompt = self.build_prompt(history)
        cancel = cancel or CancelToken()
        return guarded_stream(
            lambda: self._generate(prompt.ids, cancel, gate=gate, reuse=self.reuse_kv_cache),
            history[-1].text)

    def generate(self, prompt_ids: list[int], cancel: CancelToken,
                 decoding: DecodingOptions | None = None, *,
                 gate: Any = None) -> Generator[str, None, None]:
        """Raw streamed generation from token ids (no echo guard); ``serve`` uses this."""
        # No KV reuse here: serve's clients are unrelated conversations, and keeping one cache
        # for the voice conversation is what pays.
        return self._generate(prompt_ids, cancel, decoding, gate=gate, reuse=False)

    def _generate(self, prompt_ids: list[int], cancel: CancelToken,
                  decoding: DecodingOptions | None = None, *, gate: Any = None,
                  reuse: bool) -> Generator[str, None, None]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        input_ids = torch.tensor([prompt_ids], device=self.device)
        options = decoding or self.decoding
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=_TOKEN_POLL_S)
        failure: list[BaseException] = []
        local_stop = CancelToken()

        extra: dict[str, Any] = {}
        if gate is not None:
            from transformers import LogitsProcessorList

            extra["logits_processor"] = LogitsProcessorList([_YieldGate(gate)])

        def run() -> None:
            try:
                if gate is not None:
                    gate.acquire()
                with torch.inference_mode():
                    cache_kwargs: dict[str, Any] = {}
                    if reuse:
                        cache_kwargs, self.kv_reused_tokens = self._kv.take(model, prompt_ids)
                    output = model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancelled(cancel, local_stop)]),
                        **options.generate_kwargs(),
                        **extra,
                        **cache_kwargs,
                    )
                    if cache_kwargs:
                        # Also after a cancel: generate then returns normally with the tokens
                        # so far, and the cache holds exactly the ones it has fed the model.
                        self._kv.keep(cache_kwargs, output)
            except BaseException as err:  # handed to the consumer thread below
                failure.append(err)
                streamer.end()
            finally:
                if gate is not None:
                    gate.release()

        worker = threading.Thread(target=run, name="chat-generate", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    piece = next(streamer)
                except StopIteration:
                    break
                except queue.Empty:  # no token within the poll interval: still generating?
                    if not worker.is_alive():
                        break
                    continue
                if cancel.cancelled:
                    break
                if piece:
                    yield piece
        finally:
            # Reached on completion, on cancel and when the consumer closes us early.
            local_stop.cancel()
            worker.join()
        if failure and not cancel.cancelled:
            err = failure[0]
            if isinstance(err, TalkError):
                raise err
            raise ChatError(f"The model failed while generating: {err}") from err


class _KVCache:
    """The KV cache of the last reply, and the token ids whose keys and values it holds.

    One slot, so one conversation's cache is kept at a time. A generation checks the cache out
    (the slot is empty meanwhile), so two generations never share one; each puts back its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: Any = None
        self._ids: list[int] = []  # position i of the cache holds token self._ids[i]

    def take(self, model: Any, prompt_ids: list[int]) -> tuple[dict[str, Any], int]:
        """Arguments that give ``generate`` a cache for ``prompt_ids``, and its reused length.

        The cache is cropped to the longest common prefix of the cached and the new ids; a
        short or no prefix (another conversation, an edited or trimmed history) gets an empty
        cache. No arguments at all where this model's cache cannot be cropped safely.
        """
        with self._lock:
            cache, ids = self._cache, self._ids
            self._cache, self._ids = None, []
        name = _cache_argument(model)
        if name is None:
            return {}, 0
        # generate() needs at least one token to feed the model for the next token's logits.
        reused = min(_common_prefix(ids, prompt_ids), len(prompt_ids) - 1)
        if cache is None or reused < _MIN_REUSED_TOKENS:
            cache, reused = _empty_cache(model), 0
            if cache is None:
                return {}, 0
        elif cache.get_seq_length() > reused:
            try:
                # A negative count removes that many tokens from the end, in transformers 4
                # and 5 alike (4 read a positive one as the length to keep; 5 refuses it).
                cache.crop(reused - cache.get_seq_length())
            except Exception:  # reuse is only an optimisation: never fail a reply over it
                return self.take(model, prompt_ids)  # the slot is empty now: a fresh cache
        return {name: cache}, reused

    def keep(self, cache_kwargs: dict[str, Any], output: Any) -> None:
        """Keep the cache ``generate`` filled, if it is consistent with its ``output`` ids."""
        (cache,) = cache_kwargs.values()
        try:
            ids = getattr(output, "sequences", output)[0].tolist()
            length = cache.get_seq_length()
            # Every layer must hold the same tokens: the first `length` of prompt + reply (the
            # last generated token was never fed to the model, so it is not in the cache).
            consistent = 0 < length <= len(ids) and all(
                layer.get_seq_length() == length for layer in cache.layers)
        except Exception:  # an unexpected cache or output: drop it, the reply itself is fine
            return
        if not consistent:
            return
        with self._lock:
            self._cache, self._ids = cache, ids[:length]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):  # lengths differ: the shorter one bounds it
        if x != y:
            break
        n += 1
    return n


def _cache_argument(model: Any) -> str | None:
    """The name ``generate`` takes a cache by: ``cache`` (transformers 5), ``past_key_values``."""
    import inspect

    try:
        params = inspect.signature(model.prepare_inputs_for_generation).parameters
    except (AttributeError, TypeError, ValueError):
        return None
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def _empty_cache(model: Any) -> Any:
    """A new DynamicCache for ``model``, or None where reusing its cache would be unsafe."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer

        cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    except Exception:  # a transformers without this API: generate as before, without reuse
        return None
    layers = getattr(cache, "layers", None)
    # Only plain growing layers can be cropped back to any prefix: sliding-window layers have
    # dropped old tokens, and linear-attention (recurrent) states cannot be rewound.
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return cache


class _Cancelled:
    """Stopping criterion: the caller cancelled, or the consumer stopped reading."""

    def __init__(self, *tokens: CancelToken):
        self.tokens = tokens

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = any(token.cancelled for token in self.tokens)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _YieldGate:
    """Logits processor that changes nothing; it lets waiting model calls use the device.

    Called once per decoding step, so speech synthesis can run between two steps.
    """

    def __init__(self, gate: Any):
        self.gate = gate

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.gate.yield_turn()
        return scores
