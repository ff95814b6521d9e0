"""Chat backend that runs the persona's model in this process, through transformers."""

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


class LocalChat:
    """A persona's model on this machine (CUDA fp16 when available, else CPU fp32)."""

    def __init__(self, persona: Persona, loaded: LoadedModel,
                 decoding: DecodingOptions | None = None):
        self.persona = persona
        self.loaded = loaded
        self.decoding = decoding or persona.decoding

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
        return guarded_stream(lambda: self.generate(prompt.ids, cancel, gate=gate),
                              history[-1].text)

    def generate(self, prompt_ids: list[int], cancel: CancelToken,
                 decoding: DecodingOptions | None = None, *,
                 gate: Any = None) -> Generator[str, None, None]:
        """Raw streamed generation from token ids (no echo guard); ``serve`` uses this."""
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
                    model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancelled(cancel, local_stop)]),
                        **options.generate_kwargs(),
                        **extra,
                    )
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
