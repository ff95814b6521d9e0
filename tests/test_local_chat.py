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

    ids = torch.tensor([chat.build_prompt(history).ids], device=chat.loaded.model.device)
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
    # The reply is generated from that trimmed prompt (greedy: exactly what the model writes).
    reply = tiny_chat.reply(history)
    assert reply and reply == raw_generate(tiny_chat, history, 12)[0]


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
    reply = chat.reply(HELLO)
    assert reply and reply == raw_generate(chat, HELLO, 12)[0]


def test_cuda_setting_without_gpu_is_a_clear_error(tiny_persona_dir):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the error path needs one without")
    from engine.errors import ConfigError
    from engine.models.persona import load_persona

    with pytest.raises(ConfigError) as caught:
        LocalChat.load(load_persona(tiny_persona_dir), device="cuda")
    assert caught.value.code == "cuda_unavailable"


def test_lora_adapter_persona_loads_on_its_base(tiny_persona_dir, tmp_path):
    pytest.importorskip("peft", reason="peft is in the dev extra")
    import json

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.models.persona import load_persona

    base = AutoModelForCausalLM.from_pretrained(tiny_persona_dir)
    config = LoraConfig(r=4, target_modules=["c_attn"], init_lora_weights=False,
                        fan_in_fan_out=True)
    adapter_dir = tmp_path / "adapter"
    get_peft_model(base, config).save_pretrained(adapter_dir)
    base_persona = json.loads((tiny_persona_dir / "persona.json").read_text())
    persona = {**base_persona, "name": "Adapter", "base_model": str(tiny_persona_dir)}
    (adapter_dir / "persona.json").write_text(json.dumps(persona))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (adapter_dir / name).write_bytes((tiny_persona_dir / name).read_bytes())

    chat = LocalChat.load(load_persona(adapter_dir), device="cpu")
    assert type(chat.loaded.model).__name__ == "GPT2LMHeadModel"  # merged into the base
    reply = chat.reply(HELLO)
    assert reply and reply == raw_generate(chat, HELLO, 12)[0]  # the merged model answers
    # The random LoRA weights are really applied: the adapted model scores text differently.
    import torch

    plain = LocalChat.load(load_persona(tiny_persona_dir), device="cpu")
    ids = torch.tensor([chat.build_prompt(HELLO).ids])
    with torch.no_grad():
        adapted_logits = chat.loaded.model(ids).logits
        plain_logits = plain.loaded.model(ids).logits
    assert not torch.allclose(adapted_logits, plain_logits, atol=1e-4)
