"""Evaluate and export stages: a trained run becomes a persona the engine loads and talks with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.chat.types import Turn
from tests.test_train import tiny_config
from training.errors import TrainingError
from training.evaluate import DEFAULT_PROMPTS, evaluate, reply_metrics
from training.export import export_persona
from training.train import train

HELLO = [Turn("user", "hello there how are you today")]


@pytest.fixture(scope="module")
def full_run(tiny_persona_dir, tmp_path_factory) -> Path:
    """A full fine-tune that has overfitted the toy dialogues, evaluated, with stage reports."""
    run = tmp_path_factory.mktemp("full") / "run"
    assert train(tiny_config(tiny_persona_dir, run, epochs=15)).status == "completed"
    (run / "dataset" / "dataset.json").write_text(json.dumps({
        "source": "reddit", "base_model": "tiny", "max_tokens": 64,
        "counts": {"train": 7, "validation": 7}, "seed": 1}), encoding="utf-8")
    (run / "filtered").mkdir()
    (run / "filtered" / "report.json").write_text(json.dumps({
        "kept_comments": 20, "dropped_comments": 5, "rules": {"deleted": 3, "bot": 2},
        "kept_threads": 7, "dropped_threads": 1}), encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def lora_run(tiny_persona_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("lora") / "run"
    config = tiny_config(tiny_persona_dir, run, method="lora", epochs=10, lr=1e-2)
    assert train(config).status == "completed"
    return run


@pytest.fixture(scope="module")
def full_report(full_run) -> dict:
    return evaluate(full_run, max_new_tokens=12, device="cpu")


def logits(model, ids=(5, 17, 42, 7, 99)):
    import torch

    with torch.inference_mode():
        return model(torch.tensor([list(ids)])).logits


def test_evaluate_compares_base_and_fine_tune(full_run, full_report):
    on_disk = json.loads((full_run / "eval.json").read_text(encoding="utf-8"))
    assert on_disk == full_report
    perplexity = full_report["perplexity"]
    print("perplexity", perplexity)
    assert perplexity["finetuned"] < 0.5 * perplexity["base"]  # it learnt its training set
    assert full_report["validation"]["examples"] == 7
    assert full_report["validation"]["mask"] == "responses"
    for side in ("base", "finetuned"):
        assert set(full_report[side]) >= {"distinct_1", "distinct_2", "repetition_rate",
                                          "echo_rate"}
    assert [s["prompt"] for s in full_report["samples"]] == list(DEFAULT_PROMPTS)
    assert all(isinstance(s["reply"], str) for s in full_report["samples"])


def test_reply_metrics_count_distinct_words_repeats_and_echoes():
    metrics = reply_metrics(["how are you", "hello"],
                            ["how are you", "we go we go we go"])
    assert metrics["echo_rate"] == 0.5  # the first reply only repeats its prompt
    assert metrics["distinct_1"] == 5 / 9
    assert metrics["distinct_2"] == 4 / 7  # how-are are-you we-go go-we
    assert metrics["repetition_rate"] == 2 / 5  # "we go we" and "go we go" come back once each
    assert reply_metrics(["x"], [""])["empty_rate"] == 1.0


def test_exported_full_run_loads_in_the_engine_and_replies(full_run, full_report, data_dir):
    from engine.chat.local import LocalChat
    from engine.models.registry import find_persona

    persona = export_persona(full_run, "Tiny Berkeley", description="Toy dialogues.")
    assert persona.id == "tiny-berkeley" and persona.folder.parent == data_dir / "personas"
    assert persona.prompt_format == "dialogpt" and persona.description == "Toy dialogues."
    assert (persona.folder / "model.safetensors").is_file()
    chat = LocalChat.load(find_persona(persona.id), device="cpu", do_sample=False)
    reply = chat.reply(HELLO)
    print("exported persona replied:", repr(reply))
    assert isinstance(reply, str) and reply
    card = persona.training_card
    assert card["config"]["method"] == "full" and card["steps"] == 60
    # Nothing of the maker's machine travels with a persona: folders keep only their names.
    assert card["config"]["run_dir"] == full_run.name
    assert str(full_run.parent) not in (persona.folder / "persona.json").read_text()
    assert card["data"]["counts"] == {"train": 7, "validation": 7}
    assert card["filter"]["dropped_comments"] == 5 and card["filter"]["rules"]["bot"] == 2
    assert card["eval"]["perplexity"] == full_report["perplexity"]


def test_lora_export_merges_the_adapter_into_plain_weights(lora_run, tiny_persona_dir,
                                                           data_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.models.loader import load

    persona = export_persona(lora_run, "Tiny LoRA")
    assert not (persona.folder / "adapter_config.json").exists()
    assert (persona.folder / "model.safetensors").is_file()
    exported = load(persona, "cpu").model
    base = AutoModelForCausalLM.from_pretrained(tiny_persona_dir).eval()
    before = logits(base)
    adapted = PeftModel.from_pretrained(base, lora_run / "final").eval()
    assert torch.allclose(logits(exported), logits(adapted), atol=1e-4)
    assert not torch.allclose(logits(exported), before, atol=1e-3)  # the adapter did something


def test_adapter_only_export_loads_through_the_engine_adapter_path(lora_run, tiny_persona_dir,
                                                                   data_dir):
    import torch

    from engine.chat.local import LocalChat
    from engine.models.loader import load

    merged = export_persona(lora_run, "Tiny Merged")
    adapter = export_persona(lora_run, "Tiny Adapter", adapter_only=True)
    assert (adapter.folder / "adapter_config.json").is_file()
    assert not (adapter.folder / "model.safetensors").exists()
    assert Path(adapter.base_model) == tiny_persona_dir.resolve()
    assert torch.allclose(logits(load(adapter, "cpu").model), logits(load(merged, "cpu").model),
                          atol=1e-4)
    reply = LocalChat.load(adapter, device="cpu", do_sample=False).reply(HELLO)
    assert isinstance(reply, str) and reply


def test_export_refuses_a_taken_name_and_an_adapter_of_a_full_run(full_run, data_dir):
    export_persona(full_run, "Twice")
    with pytest.raises(TrainingError, match="called 'twice' already exists") as err:
        export_persona(full_run, "twice ")
    assert err.value.code == "persona_exists"
    with pytest.raises(TrainingError, match="Only a LoRA run has an adapter"):
        export_persona(full_run, "Adapter Of Full", adapter_only=True)
    assert not (data_dir / "personas" / "adapter-of-full").exists()
    leftovers = [p.name for p in (data_dir / "personas").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_export_needs_a_finished_run(tmp_path, data_dir):
    with pytest.raises(TrainingError, match="no finished training run") as err:
        export_persona(tmp_path, "Nothing")
    assert err.value.code == "training_not_finished"


def test_a_chat_model_base_keeps_its_prompt_format_in_training_and_export(
        tiny_persona_dir, tmp_path, data_dir):
    """A persona trained from a chat-template persona (as --base starter) is a chat persona."""
    import shutil

    from transformers import AutoTokenizer

    from engine.chat.local import LocalChat
    from engine.models.registry import find_persona
    base = tmp_path / "chatty"
    shutil.copytree(tiny_persona_dir, base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    # A compact template: the tiny model has a 64-token context.
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'][0] + ': ' + m['content'] + "
                               "eos_token }}{% endfor %}{% if add_generation_prompt %}{{ 'a: ' }}"
                               "{% endif %}")
    tokenizer.save_pretrained(base)
    data = json.loads((base / "persona.json").read_text())
    data.update(prompt_format="chat_template", system_prompt="Be Chatty.")
    (base / "persona.json").write_text(json.dumps(data))
    run = tmp_path / "run"
    assert train(tiny_config(base, run, epochs=2)).status == "completed"
    report = evaluate(run, max_new_tokens=6, device="cpu")
    assert report["prompt_format"] == "chat_template"
    persona = export_persona(run, "Chatty Trained")
    assert persona.prompt_format == "chat_template"  # was "dialogpt" whatever the base
    assert persona.system_prompt == "Be Chatty."
    chat = LocalChat.load(find_persona(persona.id), device="cpu", do_sample=False)
    prompt = chat.build_prompt(HELLO)  # fed through its chat template, system prompt first
    assert prompt.text.startswith("s: Be Chatty.") and prompt.text.endswith("a: ")
    assert chat.reply(HELLO) == chat.reply(HELLO)  # greedy: the model answers, the same way


# -- exported personas on serving engines ------------------------------------------------------


def test_dialogpt_export_is_a_plain_hf_folder_with_the_apps_prompt_as_template(full_run,
                                                                                data_dir):
    """What ``vllm serve FOLDER`` reads: config, safetensors, tokenizer, chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.chat.prompt import build_prompt
    from engine.chat.templates import DIALOGPT_CHAT_TEMPLATE

    persona = export_persona(full_run, "Served Berkeley")
    folder = persona.folder
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja"):
        assert (folder / name).is_file(), name
    assert (folder / "chat_template.jinja").read_text(encoding="utf-8") == DIALOGPT_CHAT_TEMPLATE
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["chat_template"] == DIALOGPT_CHAT_TEMPLATE  # for TGI and older readers
    assert AutoModelForCausalLM.from_pretrained(folder) is not None
    tokenizer = AutoTokenizer.from_pretrained(folder)  # as an engine loads it: no persona.json
    history = [Turn("user", "hello there"), Turn("assistant", "i am fine thanks and you"),
               Turn("user", "what is the weather like")]
    chat = [{"role": t.role, "content": t.text} for t in history]
    served = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    served = served["input_ids"] if hasattr(served, "keys") else served
    local = build_prompt(tokenizer, history, prompt_format="dialogpt", context_tokens=64,
                         reply_tokens=12)
    assert list(served) == local.ids


def test_lora_export_merged_by_default_carries_the_template(lora_run, data_dir):
    """A merged LoRA export is plain weights: engines without adapter support load it."""
    from transformers import AutoTokenizer

    from engine.chat.templates import DIALOGPT_CHAT_TEMPLATE

    merged = export_persona(lora_run, "Merged For Engines")
    assert AutoTokenizer.from_pretrained(merged.folder).chat_template == DIALOGPT_CHAT_TEMPLATE
    adapter = export_persona(lora_run, "Adapter For Engines", adapter_only=True)
    assert (adapter.folder / "chat_template.jinja").is_file()  # vLLM --enable-lora needs a base


def test_transformers_serve_chat_completions_equal_the_local_reply(full_run, data_dir, tmp_path,
                                                                   monkeypatch):
    """``/v1/chat/completions`` on an exported DialoGPT folder: the app's greedy reply."""
    import dataclasses

    import huggingface_hub.constants

    from engine.chat.local import LocalChat
    from engine.chat.remote import RemoteChat, RetryPolicy
    from tests.test_remote_openai import transformers_serve

    # The suite runs offline (HF_HUB_OFFLINE), which also blocks requests to 127.0.0.1.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    persona = export_persona(full_run, "Served Greedy")
    local = LocalChat.load(persona, device="cpu", do_sample=False)
    # A dialogue it overfitted (tests.test_train.DIALOGUES): a reply of words, not an empty one.
    history = [Turn("user", "what is the weather like"), Turn("assistant", "it is sunny"),
               Turn("user", "do you like music")]
    # The same folder seen as a chat-template persona: the client sends messages and the
    # engine builds the prompt from the exported template instead of the app sending text.
    as_chat = dataclasses.replace(persona, prompt_format="chat_template")
    with transformers_serve(persona.folder, tmp_path / "serve.log", start_s=120) as url:
        client = RemoteChat.connect(url, as_chat, api="openai", do_sample=False,
                                    retry=RetryPolicy(attempts=2, timeout_s=30.0,
                                                      reply_timeout_s=60.0))
        assert client.build_prompt(history).ids == local.build_prompt(history).ids
        for turns in (HELLO, history):
            expected = local.reply(turns)
            print("local and served:", repr(expected))
            assert expected  # an empty reply on both sides would prove nothing
            assert client.reply(turns) == expected
            assert "".join(client.stream_reply(turns)).strip() == expected
