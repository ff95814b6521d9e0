"""The train stage: loss masking, batching, learning, checkpoints, exact resume, launchers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cancel import CancelToken
from training.encode import IGNORE_INDEX, Collator, encode_instance
from training.errors import TrainingError
from training.memory import ModelShape, estimate_memory
from training.train import TrainConfig, train

REPO = Path(__file__).resolve().parent.parent
DIALOGUES = [
    ["hello there how are you today", "i am fine thanks and you"],
    ["what is the weather like in berkeley", "it is sunny and warm near the campus"],
    ["do you like music or movies more", "the quick brown fox jumps over the lazy dog"],
    ["hello there", "how are you today", "i am fine thanks"],
    ["what is the weather like", "it is sunny", "and warm near the campus"],
    ["do you like music", "i like movies more"],
    ["how are you", "i am fine"],
]


def write_dataset(run_dir: Path, train_set=DIALOGUES, validation=DIALOGUES) -> Path:
    folder = run_dir / "dataset"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train_set), ("validation", validation)):
        lines = [json.dumps({"thread": f"t{i}", "turns": turns}) for i, turns in enumerate(rows)]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def tiny_config(base: Path, run_dir: Path, **overrides) -> TrainConfig:
    write_dataset(run_dir)
    settings = dict(base_model=str(base), run_dir=str(run_dir), device="cpu", epochs=3,
                    batch_size=2, lr=3e-3, save_every=0, max_tokens=64, method="full",
                    mask="responses")
    settings.update(overrides)
    return TrainConfig(**settings)


def final_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    final = run_dir / "final"
    name = "adapter_model.safetensors" if (final / "adapter_config.json").is_file() \
        else "model.safetensors"
    return load_file(final / name)


def assert_same_weights(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different[:5]}"


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["loss"] for line in lines]


def cancel_at(step: int) -> tuple[CancelToken, callable]:
    token = CancelToken()

    def progress(info: dict) -> None:
        if info["step"] == step:
            token.cancel()

    return token, progress


# --- encoding ---


@pytest.fixture(scope="module")
def tokenizer(tiny_persona_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_persona_dir)


def test_responses_mask_trains_every_reply_with_its_eos_and_not_the_context(tokenizer):
    turns = ["hello there", "how are you today", "i am fine"]
    ids, labels = encode_instance(turns, tokenizer, max_tokens=64, mask="responses")
    eos = tokenizer.eos_token_id
    first = tokenizer.encode("hello there") + [eos]
    rest = tokenizer.encode("how are you today") + [eos] + tokenizer.encode("i am fine") + [eos]
    assert ids == first + rest
    assert labels == [IGNORE_INDEX] * len(first) + rest


def test_last_mask_trains_only_the_final_turn_and_none_trains_all(tokenizer):
    turns = ["hello there", "how are you today", "i am fine"]
    eos = tokenizer.eos_token_id
    last = tokenizer.encode("i am fine") + [eos]
    ids, labels = encode_instance(turns, tokenizer, max_tokens=64, mask="last")
    assert labels == [IGNORE_INDEX] * (len(ids) - len(last)) + last
    ids, labels = encode_instance(turns, tokenizer, max_tokens=64, mask="none")
    assert labels == ids


def test_too_long_dialogue_loses_its_oldest_turns_first(tokenizer):
    turns = ["what is the weather like in berkeley", "it is sunny", "and warm"]
    eos = tokenizer.eos_token_id
    kept = tokenizer.encode("it is sunny") + [eos] + tokenizer.encode("and warm") + [eos]
    ids, labels = encode_instance(turns, tokenizer, max_tokens=len(kept), mask="responses")
    assert ids == kept
    assert labels[-len(tokenizer.encode("and warm")) - 1:] == ids[-len(
        tokenizer.encode("and warm")) - 1:]
    with pytest.raises(TrainingError, match="loss mask"):
        encode_instance(turns, tokenizer, max_tokens=64, mask="everything")  # type: ignore


CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture
def chat_tokenizer(tiny_persona_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_persona_dir)
    tok.chat_template = CHATML
    return tok


def test_chat_layout_is_the_templates_rendering_and_trains_only_the_replies(chat_tokenizer):
    from engine.chat.prompt import build_prompt
    from engine.chat.types import Turn

    tok = chat_tokenizer
    turns = ["too old to keep", "hello there", "how are you today", "i am fine"]
    ids, labels = encode_instance(turns, tok, max_tokens=512, mask="responses",
                                  prompt_format="chat_template", system_prompt="Be brief.")
    messages = [{"role": "system", "content": "Be brief."}] + [
        {"role": r, "content": t} for r, t in zip(["user", "assistant"] * 2, turns, strict=True)]
    assert ids == list(tok.apply_chat_template(messages, tokenize=True)["input_ids"])
    trained = tok.decode([t for t in labels if t != IGNORE_INDEX])
    assert trained == "hello there<|im_end|>\ni am fine<|im_end|>\n"  # replies, not headers
    # What the engine feeds the persona at chat time is exactly the trained layout's prefix.
    prompt = build_prompt(tok, [Turn("user", "too old to keep"), Turn("assistant", "hello there"),
                                Turn("user", "how are you today")],
                          prompt_format="chat_template", context_tokens=512, reply_tokens=8,
                          system_prompt="Be brief.")
    assert ids[:len(prompt.ids)] == prompt.ids
    _, last = encode_instance(turns, tok, max_tokens=512, mask="last",
                              prompt_format="chat_template")
    assert tok.decode([t for t in last if t != IGNORE_INDEX]) == "i am fine<|im_end|>\n"
    short, _ = encode_instance(turns, tok, max_tokens=len(ids) - 10, mask="responses",
                               prompt_format="chat_template", system_prompt="Be brief.")
    assert "hello there" not in tok.decode(short) and "i am fine" in tok.decode(short)
    with pytest.raises(TrainingError, match="no chat template"):
        tok.chat_template = None
        encode_instance(turns, tok, max_tokens=64, prompt_format="chat_template")


def test_collator_pads_on_the_right_and_hides_padding_from_loss_and_attention(tokenizer):
    eos = tokenizer.eos_token_id
    batch = Collator(eos)([([5, 6, 7], [IGNORE_INDEX, 6, 7]), ([8], [8])])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, eos, eos]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]


# --- training ---


def test_tiny_model_learns_the_toy_dialogues(tiny_persona_dir, tmp_path):
    config = tiny_config(tiny_persona_dir, tmp_path / "run", epochs=15, save_every=25)
    seen: list[dict] = []
    result = train(config, progress=seen.append)
    assert result.status == "completed"
    assert result.step == result.total_steps == 15 * 4  # 7 dialogues in batches of 2
    curve = losses(tmp_path / "run")
    assert len(curve) == 60
    start, end = sum(curve[:3]) / 3, sum(curve[-5:]) / 5
    print(f"loss {start:.2f} -> {end:.2f}")
    assert end < 0.6 * start
    assert set(seen[-1]) >= {"step", "total_steps", "epoch", "loss", "lr", "tokens_per_s", "eta_s"}
    assert seen[-1]["step"] == 60 and seen[-1]["eta_s"] == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
    assert TrainConfig.from_dict(saved) == config
    assert (result.final_dir / "model.safetensors").is_file()
    assert (result.final_dir / "tokenizer.json").is_file()
    assert result.checkpoint == tmp_path / "run" / "checkpoints" / "step-50"
    assert sorted(p.name for p in result.checkpoint.parent.iterdir()) == [
        "latest", "step-25", "step-50"]


def test_cancelled_then_resumed_run_ends_with_the_same_weights(tiny_persona_dir, tmp_path):
    # Dropout is on (GPT-2's default 0.1), steps accumulate two batches and the cancel falls
    # in the middle of an epoch: RNG, optimizer, scheduler and data position must all resume.
    settings = dict(epochs=3, grad_accum=2, save_every=3)
    straight = train(tiny_config(tiny_persona_dir, tmp_path / "straight", **settings))
    token, stop_at_5 = cancel_at(5)
    config = tiny_config(tiny_persona_dir, tmp_path / "stopped", **settings)
    cancelled = train(config, progress=stop_at_5, cancel=token)
    assert cancelled.status == "cancelled" and cancelled.step == 5
    assert cancelled.final_dir is None and not (tmp_path / "stopped" / "final").exists()
    checkpoints = tmp_path / "stopped" / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "step-5"
    assert json.loads((checkpoints / "step-5" / "trainer_state.json").read_text())["step"] == 5
    resumed = train(config)
    assert resumed.status == "completed" and resumed.resumed_from == 5
    assert resumed.step == straight.step == 6
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")
    assert_same_weights(final_weights(tmp_path / "stopped"), final_weights(tmp_path / "straight"))


def test_cancel_before_the_first_step_returns_without_training(tiny_persona_dir, tmp_path):
    token = CancelToken()
    token.cancel()
    result = train(tiny_config(tiny_persona_dir, tmp_path / "run", save_every=1), cancel=token)
    assert (result.status, result.step, result.checkpoint) == ("cancelled", 0, None)
    assert not (tmp_path / "run" / "final").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_lora_run_resumes_exactly_and_checkpoints_only_the_adapter(tiny_persona_dir, tmp_path):
    settings = dict(method="lora", lora_r=4, lora_dropout=0.1, epochs=2, save_every=2,
                    gradient_checkpointing=True)
    straight = train(tiny_config(tiny_persona_dir, tmp_path / "straight", **settings))
    token, stop_at_3 = cancel_at(3)
    config = tiny_config(tiny_persona_dir, tmp_path / "stopped", **settings)
    assert train(config, progress=stop_at_3, cancel=token).status == "cancelled"
    resumed = train(config)
    assert resumed.resumed_from == 3 and resumed.step == straight.step == 8
    assert_same_weights(final_weights(tmp_path / "stopped"), final_weights(tmp_path / "straight"))
    assert (straight.final_dir / "adapter_config.json").is_file()
    saved = final_weights(tmp_path / "straight")
    assert saved and all("lora_" in key for key in saved)
    from safetensors.torch import load_file

    checkpoint = load_file(straight.checkpoint / "model.safetensors")
    assert checkpoint and all("lora_" in key for key in checkpoint)  # no copy of the base


def _python_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), TTT_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    return env


def test_killed_training_process_resumes_to_the_same_weights(tiny_persona_dir, tmp_path):
    settings = dict(epochs=12, save_every=2)
    straight = train(tiny_config(tiny_persona_dir, tmp_path / "straight", **settings))
    run = tmp_path / "killed"
    config = tiny_config(tiny_persona_dir, run, **settings)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    command = [sys.executable, "-m", "training.train", "--config", str(path)]
    env = _python_env(tmp_path / "data")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    latest = run / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if latest.is_file():  # a checkpoint is complete: kill it, maybe mid-way the next
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, f"it ended before the kill: {err.decode()}"
    assert not (run / "final").exists()
    print("killed after", latest.read_text().strip())
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same_weights(final_weights(run), final_weights(tmp_path / "straight"))
    assert losses(run) == losses(tmp_path / "straight")
    assert straight.step == 48


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_accelerate_launch_trains_with_two_cpu_processes(tiny_persona_dir, tmp_path):
    pytest.importorskip("accelerate", reason="accelerate is not installed (pip install .[train])")
    run = tmp_path / "run"
    config = tiny_config(tiny_persona_dir, run, epochs=2, save_every=1)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()), encoding="utf-8")
    # --multi_gpu starts the processes through torchrun; device "cpu" makes them use gloo.
    # Every option is given so accelerate never asks a question (there is no stdin in CI).
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "training.train", "--config", str(path)]
    done = subprocess.run(command, cwd=REPO, env=_python_env(tmp_path / "data"),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert (latest / "random_states_0.pkl").is_file()
    assert (latest / "random_states_1.pkl").is_file()  # a second process took part
    # 7 dialogues, batches of 2: 4 batches an epoch, split over 2 processes = 2 steps.
    assert json.loads((latest / "trainer_state.json").read_text())["step"] == 4
    assert (run / "final" / "model.safetensors").is_file()
    assert done.stdout.count("done:") == 1  # only the main process reports


# --- bad settings ---


def test_bad_settings_raise_training_error_with_a_clear_message(tiny_persona_dir, tmp_path):
    base = dict(base_model=str(tiny_persona_dir), run_dir=str(tmp_path / "run"))
    with pytest.raises(TrainingError, match="'method' must be one of full, lora") as err:
        TrainConfig(**base, method="qlora")
    assert err.value.code == "training_config_invalid"
    with pytest.raises(TrainingError, match="fp16 needs a CUDA GPU"):
        TrainConfig(**base, precision="fp16", device="cpu")
    with pytest.raises(TrainingError, match="'batch_size' has an invalid value"):
        TrainConfig(**base, batch_size=0)
    with pytest.raises(TrainingError, match="Unknown training setting 'learning_rate'"):
        TrainConfig.from_dict({**base, "learning_rate": 1.0})
    with pytest.raises(TrainingError, match="with method 'lora' only"):
        TrainConfig(**base, method="full", device_map="auto")
    import torch

    if not torch.cuda.is_available():  # "auto" resolves to the CPU here
        with pytest.raises(TrainingError, match="bf16 needs a CUDA GPU"):
            train(TrainConfig(**base, precision="bf16"))


def test_missing_data_or_base_model_is_a_training_error(tiny_persona_dir, tmp_path):
    with pytest.raises(TrainingError, match="No dataset file") as err:
        train(TrainConfig(base_model=str(tiny_persona_dir), run_dir=str(tmp_path / "empty"),
                          device="cpu"))
    assert "dataset stage" in (err.value.hint or "")
    config = tiny_config(tmp_path / "no-such-model", tmp_path / "run")
    with pytest.raises(TrainingError, match="No base model"):
        train(config)


def test_a_run_folder_resumes_only_with_the_same_settings(tiny_persona_dir, tmp_path):
    config = tiny_config(tiny_persona_dir, tmp_path / "run", epochs=1, save_every=1)
    token, stop_at_1 = cancel_at(1)
    assert train(config, progress=stop_at_1, cancel=token).status == "cancelled"
    changed = TrainConfig(**{**config.to_dict(), "lr": 1e-4})
    with pytest.raises(TrainingError, match=r"other settings \(lr: 0.003 there, 0.0001 now\)") \
            as err:
        train(changed)
    assert err.value.code == "training_config_mismatch"


def test_memory_estimate_orders_the_options_sensibly(tmp_path):
    large = ModelShape(n_layer=36, hidden=1280, n_head=20)  # DialoGPT-large
    n = 774_000_000

    def estimate(**kw) -> int:
        config = TrainConfig(base_model="x", run_dir=str(tmp_path), batch_size=2,
                             max_tokens=256, **kw)
        return estimate_memory(config, n, shape=large, on_cuda=True)

    full = estimate(method="full", precision="fp32")
    lora = estimate(method="lora", precision="fp32")
    lora_half = estimate(method="lora", precision="fp16")
    lora_half_ckpt = estimate(method="lora", precision="fp16", gradient_checkpointing=True)
    assert full > lora > lora_half > lora_half_ckpt
    assert full > 16 * n  # weights, gradients and two Adam moments in fp32
    assert 1.5e9 < lora_half_ckpt < 11e9


# --- the real starter model ---


@pytest.mark.slow
def test_lora_on_the_starter_lowers_validation_perplexity(tmp_path):
    """SmolLM2-135M learns a persona's style from a few dialogues (CPU, well under 90 s)."""
    from training.evaluate import evaluate

    pirate = [
        ["How are you today?", "Arr, I be fine, matey!"],
        ["What is the weather like?", "Arr, the winds be fair, matey!"],
        ["Do you like music?", "Arr, I love a good sea shanty, matey!"],
        ["Where are you going?", "Arr, to sea, matey!"],
        ["What did you eat?", "Arr, salted fish, matey!"],
        ["Are you tired?", "Arr, never, matey!"],
        ["Do you have a pet?", "Arr, a parrot, matey!"],
        ["What is your name?", "Arr, Captain Jack, matey!"],
    ]
    validation = [["Where do you live?", "Arr, on my ship, matey!"],
                  ["What do you do all day?", "Arr, I sail the seas, matey!"],
                  ["Do you like coffee?", "Arr, I like rum, matey!"]]
    run = tmp_path / "run"
    write_dataset(run, pirate, validation)
    config = TrainConfig(base_model="starter", run_dir=str(run), method="lora", lora_r=4,
                         epochs=3, batch_size=4, lr=2e-3, max_tokens=32, device="cpu",
                         save_every=0)
    from training.base import resolve_base

    started = time.monotonic()
    resolve_base("starter")  # converts the GGUF once per data folder (shared with chat tests)
    converted = time.monotonic()
    result = train(config)
    trained = time.monotonic()
    report = evaluate(run, prompts=("Hello, who are you?",), max_new_tokens=8, device="cpu")
    print(f"GGUF ready {converted - started:.1f} s, train {trained - converted:.1f} s, "
          f"evaluate {time.monotonic() - trained:.1f} s, "
          f"perplexity {report['perplexity']}, sample {report['samples'][0]}")
    assert result.status == "completed" and result.step == 6
    assert report["perplexity"]["finetuned"] < 0.7 * report["perplexity"]["base"]
    assert (run / "eval.json").is_file()
    # It stays a chat-template model: fed as the starter is, its replies do not open with the
    # role name the DialoGPT layout used to leak ("assistant\n...").
    assert report["prompt_format"] == "chat_template"
    assert not report["samples"][0]["reply"].lower().startswith("assistant")
    from engine.chat.local import LocalChat
    from engine.chat.types import Turn
    from training.export import export_persona

    persona = export_persona(run, "Pirate")
    assert persona.prompt_format == "chat_template"
    reply = LocalChat.load(persona, device="cpu", do_sample=False).reply(
        [Turn("user", "Where are you going?")])
    print("exported pirate:", repr(reply))
    assert reply and not reply.lower().startswith("assistant")
