"""Training speed and memory: full fine-tuning vs LoRA, with fp16 and gradient checkpointing.

The model is DialoGPT-large-shaped (GPT-2, 36 layers, hidden 1280, 20 heads, vocab 50257) with
random weights, so nothing is downloaded. Each variant runs ``training.train.train`` for a few
steps in its own process, so its peak memory is its own: ``torch.cuda.max_memory_allocated`` on
CUDA, the process's peak resident memory (VmHWM) on the CPU. The first step is left out of
tokens/s (warm-up).

    .venv/bin/python benchmarks/train.py                  # CPU, --small shapes
    .venv/bin/python benchmarks/train.py --device cuda    # the real large shape

On the CPU, ``--small`` (the default there) uses a quarter of the depth, 128-token sequences and
batches of 2; fp16 variants need CUDA and are skipped. The last line says whether DialoGPT-large
with LoRA + fp16 + gradient checkpointing fits in 11 GB: measured on CUDA, estimated
(training.memory.estimate_memory) on the CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LARGE = {"n_layer": 36, "n_embd": 1280, "n_head": 20}  # microsoft/DialoGPT-large
BUDGET_BYTES = 11 * 1024**3  # an 11 GB card (GTX 1080 Ti / RTX 2080 Ti class)
WORDS = ("hello there how are you today i am fine thanks what is the weather like in berkeley "
         "it is sunny and warm near the campus do you like music or movies more").split()
GB = 1024**3


def build_model(folder: Path, shape: dict[str, int]) -> int:
    """A random GPT-2 of ``shape`` with a small byte-level BPE tokenizer; returns its size."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers import decoders as tk_decoders
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    eos = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk_decoders.ByteLevel()
    tok.train_from_iterator([" ".join(WORDS)] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=[eos], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = GPT2TokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=eos,
                                  unk_token=eos, model_max_length=1024)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    # The real vocabulary size: the logits (batch x tokens x 50257) are a large part of memory.
    config = GPT2Config(vocab_size=50257, n_positions=1024, bos_token_id=0, eos_token_id=0,
                        **shape)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def write_dataset(run_dir: Path, seq: int, count: int) -> None:
    """Dialogues long enough that every instance is cut to exactly ``seq`` tokens."""
    import random

    rng = random.Random(0)
    folder = run_dir / "dataset"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        turns = [" ".join(rng.choices(WORDS, k=seq)) for _ in range(2)]
        lines.append(json.dumps({"thread": str(i), "turns": turns}))
    for name in ("train", "validation"):
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def rss_bytes(peak: bool) -> int:
    """Resident memory of this process now, or its peak (VmHWM) since it started.

    Not ``getrusage``'s ru_maxrss: on Linux it survives exec, so a child would report the
    parent's size at fork time whenever that is larger.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        key = "VmHWM:" if peak else "VmRSS:"
        for line in status.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    try:
        import psutil

        if not peak:
            return psutil.Process().memory_info().rss
    except ImportError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child(spec: dict) -> None:
    """Run one variant in this process; print a JSON line with its figures."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    from training.train import TrainConfig, train

    cuda = spec["device"] == "cuda"
    config = TrainConfig(
        base_model=spec["model"], run_dir=spec["run"], method=spec["method"],
        precision=spec["precision"], gradient_checkpointing=spec["checkpointing"],
        batch_size=spec["batch"], max_tokens=spec["seq"], max_steps=spec["steps"], epochs=1,
        save_every=0, device=spec["device"], lr=1e-5, mask="none", lora_r=8)
    stamps: list[float] = []
    baseline = rss_bytes(peak=False)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    train(config, progress=lambda info: stamps.append(time.perf_counter()))
    tokens = (len(stamps) - 1) * spec["batch"] * spec["seq"]
    print(json.dumps({
        "tokens_per_s": tokens / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None,
        "peak_bytes": torch.cuda.max_memory_allocated() if cuda else rss_bytes(peak=True),
        "baseline_bytes": 0 if cuda else baseline,
    }))


def run_variant(spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--small", action=argparse.BooleanOptionalAction, default=None,
                        help="quarter depth, seq 128, batch 2 (default on the CPU)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per variant")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    from transformers.utils import logging as hf_logging

    from training.memory import ModelShape, estimate_memory
    from training.train import TrainConfig

    hf_logging.disable_progress_bar()
    cuda = args.device == "cuda"
    small = (not cuda) if args.small is None else args.small
    shape = dict(LARGE, n_layer=LARGE["n_layer"] // 4) if small else dict(LARGE)
    seq, batch = (128, 2) if small else (256, 4)
    steps = args.steps or (6 if small else 10)
    variants = [("full", "fp32", False), ("full", "fp32", True), ("lora", "fp32", False),
                ("lora", "fp32", True)]
    if cuda:
        variants = [("full", "fp32", False), ("full", "fp16", False), ("lora", "fp32", False),
                    ("lora", "fp16", False), ("lora", "fp16", True)]
    with tempfile.TemporaryDirectory(prefix="ttt-bench-") as tmp:
        model_dir = Path(tmp) / "model"
        started = time.perf_counter()
        n_params = build_model(model_dir, shape)
        print(f"device {args.device}; GPT-2 {shape['n_layer']} layers x {shape['n_embd']} "
              f"hidden, {n_params / 1e6:.0f}M parameters (random, built in "
              f"{time.perf_counter() - started:.0f} s); seq {seq}, batch {batch}, {steps} steps")
        print(f"{'variant':<24}{'tokens/s':>10}{'peak memory':>16}{'estimate':>12}")
        measured: dict[tuple, dict] = {}
        for index, (method, precision, ckpt) in enumerate(variants):
            name = f"{method} {precision}" + (" +ckpt" if ckpt else "")
            spec = {"model": str(model_dir), "run": str(Path(tmp) / f"run{index}"),
                    "method": method, "precision": precision, "checkpointing": ckpt,
                    "batch": batch, "seq": seq, "steps": steps, "device": args.device}
            write_dataset(Path(spec["run"]), seq, batch * (steps + 1))
            result = run_variant(spec)
            measured[(method, precision, ckpt)] = result
            config = TrainConfig(base_model="x", run_dir=tmp, method=method, precision=precision,
                                 gradient_checkpointing=ckpt, batch_size=batch, max_tokens=seq,
                                 device=args.device)
            guess = estimate_memory(config, n_params, shape=ModelShape(
                shape["n_layer"], shape["n_embd"], shape["n_head"]), on_cuda=cuda)
            if "error" in result:
                print(f"{name:<24}  failed: {result['error']}")
                continue
            label = "CUDA peak" if cuda else "peak RSS"
            print(f"{name:<24}{result['tokens_per_s']:>10.0f}{result['peak_bytes'] / GB:>9.2f} GB "
                  f"{label:<9}{guess / GB:>6.2f} GB")
        if not cuda:
            baseline = min((r["baseline_bytes"] for r in measured.values() if "error" not in r),
                           default=0)
            print(f"(peak RSS is the whole process: {baseline / GB:.2f} GB of it is Python and "
                  "torch before the model loads; estimate is training.memory."
                  "estimate_memory, which counts training state only)")
        _verdict(cuda, small, measured, seq)


def _verdict(cuda: bool, small: bool, measured: dict, seq: int) -> None:
    """Say whether DialoGPT-large LoRA + fp16 + checkpointing fits in 11 GB."""
    from training.memory import ModelShape, estimate_memory
    from training.train import TrainConfig

    run = measured.get(("lora", "fp16", True), {})
    if cuda and not small and "peak_bytes" in run:
        fits = run["peak_bytes"] <= BUDGET_BYTES
        print(f"DialoGPT-large LoRA + fp16 + gradient checkpointing (batch 4, seq {seq}): "
              f"measured peak {run['peak_bytes'] / GB:.2f} GB of CUDA memory -> "
              f"{'fits' if fits else 'does NOT fit'} in 11 GB")
        return
    config = TrainConfig(base_model="x", run_dir="x", method="lora", precision="fp16",
                         gradient_checkpointing=True, batch_size=4, max_tokens=256,
                         device="cuda")
    shape = ModelShape(LARGE["n_layer"], LARGE["n_embd"], LARGE["n_head"])
    n_params = 774_030_080  # GPT-2 large / DialoGPT-large
    guess = estimate_memory(config, n_params, shape=shape, on_cuda=True)
    print(f"DialoGPT-large LoRA + fp16 + gradient checkpointing (batch 4, seq 256): ESTIMATE "
          f"{guess / GB:.2f} GB (estimate_memory, not measured) -> "
          f"{'fits' if guess <= BUDGET_BYTES else 'does NOT fit'} in 11 GB")


if __name__ == "__main__":
    main()
