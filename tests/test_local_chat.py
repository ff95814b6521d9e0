"""The local backend with the tiny random DialoGPT persona: call shape, streaming, cancel."""

from __future__ import annotations

import threading

import pytest

from engine.chat.local import LocalChat
from engine.chat.types import CancelToken, Turn
from engine.errors import PromptTooLongError

HELLO = [Turn("user", "hello there how are you")]


def test_loads_on_cpu_in_fp32(tiny_chat):
    import torch

    assert tiny_chat.device == "cpu"
    assert next(tiny_chat.loaded.model.parameters()).dtype == torch.float32
    assert tiny_chat.loaded.context_tokens == 128


def raw_generate(chat: LocalChat, history, max_new_tokens: int) -> tuple[str, int]:
    """What the model itself produces for the engine's prompt (greedy)."""
    import torch

    ids = torch.tensor([chat.build_prompt(history).ids])
    out = chat.loaded.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=max_new_tokens,
                                     pad_token_id=chat.loaded.tokenizer.eos_token_id)
    new = out[0, ids.shape[1]:]
    return chat.loaded.tokenizer.decode(new, skip_special_tokens=True).strip(), len(new)


def test_reply_is_what_the_model_generates(tiny_chat):
    reply = tiny_chat.reply(HELLO)
    expected, n_tokens = raw_generate(tiny_chat, HELLO, 12)
    assert isinstance(reply, str) and reply
    assert reply == expected
    # The fixture never emits EOS, so greedy decoding writes exactly max_new_tokens tokens.
    assert n_tokens == 12


def test_stream_matches_reply_and_terminates(tiny_chat):
    pieces = list(tiny_chat.stream_reply(HELLO))
    assert len(pieces) > 1
    assert all(isinstance(p, str) for p in pieces)
    assert "".join(pieces).strip() == tiny_chat.reply(HELLO)


def test_cancel_mid_stream_stops_generation(tiny_persona_dir):
    from engine.models.persona import load_persona

    chat = LocalChat.load(load_persona(tiny_persona_dir), device="cpu", max_new_tokens=100)
    cancel = CancelToken()
    received = []
    for piece in chat.stream_reply(HELLO, cancel=cancel):
        received.append(piece)
        if len(received) == 3:
            cancel.cancel()
    assert 3 <= len(received) < 10
    assert not [t for t in threading.enumerate() if t.name == "chat-generate"]


def test_closing_the_stream_stops_the_generation_thread(tiny_persona_dir):
    from engine.models.persona import load_persona

    chat = LocalChat.load(load_persona(tiny_persona_dir), device="cpu", max_new_tokens=100)
    stream = chat.stream_reply(HELLO)
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "chat-generate"]


def test_overrides_change_decoding(tiny_persona_dir):
    from engine.models.persona import load_persona

    chat = LocalChat.load(load_persona(tiny_persona_dir), device="cpu", max_new_tokens=4,
                          temperature=None)
    assert chat.decoding.max_new_tokens == 4
    assert chat.reply(HELLO) == raw_generate(chat, HELLO, 4)[0]


def test_sampling_settings_reach_generate(tiny_persona_dir):
    from engine.models.persona import load_persona

    chat = LocalChat.load(load_persona(tiny_persona_dir), device="cpu", do_sample=True,
                          temperature=1.5, top_k=5, top_p=0.9, max_new_tokens=6)
    replies = {chat.reply(HELLO) for _ in range(4)}
    assert len(replies) > 1  # sampling: not the same reply every time


def test_long_history_keeps_the_prompt_inside_the_context(tiny_chat):
    history = [Turn("user" if i % 2 == 0 else "assistant", "what is the weather like")
               for i in range(61)]
    prompt = tiny_chat.build_prompt(history)
    assert len(prompt.ids) <= 128 - 12
    assert prompt.turns_dropped > 0
    assert isinstance(tiny_chat.reply(history), str)


def test_too_long_message_is_refused_clearly(tiny_chat):
    with pytest.raises(PromptTooLongError):
        tiny_chat.reply([Turn("user", "weather " * 300)])


@pytest.mark.gpu
def test_cuda_loads_in_fp16(tiny_persona_dir):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (this machine has none)")
    from engine.models.persona import load_persona

    chat = LocalChat.load(load_persona(tiny_persona_dir), device="auto")
    assert chat.device == "cuda"
    assert next(chat.loaded.model.parameters()).dtype == torch.float16
    assert isinstance(chat.reply(HELLO), str)


def test_cuda_setting_without_gpu_is_a_clear_error(tiny_persona_dir):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the error path needs one without")
    from engine.errors import ConfigError
    from engine.models.persona import load_persona

    with pytest.raises(ConfigError) as caught:
        LocalChat.load(load_persona(tiny_persona_dir), device="cuda")
    assert caught.value.code == "cuda_unavailable"
