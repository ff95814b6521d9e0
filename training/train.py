"""Fine-tune a causal LM on a run's dialogue dataset: full weights or a LoRA adapter.

A plain loop in the style of transformers' ``run_clm_no_trainer.py`` and nanoGPT, on
``accelerate.Accelerator``, so one entry point runs in-process (the app), as
``python -m training.train`` and under ``accelerate launch`` (DDP, FSDP, DeepSpeed)::

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no
        --dynamo_backend no -m training.train --config RUN/config.json    (one line)

``--multi_gpu`` starts the processes through torchrun; with ``device`` "cpu" (or no GPU) they
train on the CPU over gloo. (``accelerate launch --cpu`` starts several CPU processes only
through ``mpirun``; without it, it silently starts one.)

Reads ``<run>/dataset/train.jsonl``; writes ``config.json``, ``log.jsonl``, checkpoints every
``save_every`` optimizer steps (training.checkpoints) and, at the end, ``final/`` (weights or
adapter, plus tokenizer). A run started again with the same config resumes from its latest
checkpoint and ends with the same weights as if it had never stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from engine.cancel import CancelToken
from engine.fsutil import atomic_folder
from engine.models.device import DEVICE_SETTINGS
from training import checkpoints
from training.checkpoints import Position
from training.encode import MASKS, Collator, Mask, encode_all, pad_token_id, read_instances
from training.errors import TrainingError

METHODS = ("full", "lora")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
FINAL_DIR = "final"
# Fields that may change between a run and its resumption without changing the result.
RESUMABLE_CHANGES = ("run_dir", "save_every", "keep_checkpoints")
DEFAULT_LR = {"full": 5e-5, "lora": 2e-4}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; saved as ``config.json`` beside its checkpoints."""

    base_model: str  # Hub id ("microsoft/DialoGPT-medium"), model/persona folder, or persona id
    run_dir: str  # the run folder: dataset/ in, checkpoints/ final/ config.json log.jsonl out
    # The defaults are the command line's and the training dialog's (training/cli.py reads
    # them from here): LoRA, sequences of 128 tokens as DialoGPT used, loss on the last turn.
    method: str = "lora"  # "lora": a low-rank adapter on a frozen base; "full": every weight
    lora_r: int = 8  # LoRA rank: the adapter's capacity (and size)
    lora_alpha: int = 16  # LoRA scale numerator: updates are scaled by alpha / r
    lora_dropout: float = 0.05  # dropout on the adapter's input
    target_modules: tuple[str, ...] | None = None  # None: per architecture (base.LORA_TARGETS)
    epochs: int = 3  # passes over the training set
    batch_size: int = 4  # dialogues per forward pass, per process
    grad_accum: int = 1  # forward passes per optimizer step (effective batch = product)
    lr: float | None = None  # peak learning rate; None: 5e-5 full, 2e-4 LoRA
    warmup_steps: int = 0  # optimizer steps of linear warm-up, then linear decay to 0
    weight_decay: float = 0.0  # AdamW decoupled decay (not applied to biases and norms)
    max_grad_norm: float = 1.0  # gradient clipping; 0 disables
    max_tokens: int = 128  # longest training sequence; longer dialogues lose old turns
    # Loss on: the "last" turn, every "responses" turn (not turn 1), or "none" masked. Dataset
    # instances are windows ending at each reply, so "last" trains every reply exactly once
    # (with up to four turns of context); "responses" would train a reply once per window.
    mask: str = "last"
    precision: str = "auto"  # "fp32", "fp16"/"bf16" (CUDA only), auto: bf16>fp16 on CUDA, fp32
    gradient_checkpointing: bool = False  # recompute activations: less memory, ~30% slower
    seed: int = 42  # seeds weights init (LoRA), dropout and the data order
    save_every: int = 100  # optimizer steps between checkpoints (0: only when cancelled)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk (0: all)
    max_steps: int | None = None  # stop after this many optimizer steps (None: all epochs)
    device: str = "auto"  # "auto", "cuda" or "cpu" ("accelerate launch" decides when used)
    device_map: str | None = None  # "auto": split a big base over the GPUs (LoRA, 1 process)
    data_dir: str | None = None  # folder of train.jsonl/validation.jsonl; None: run_dir/dataset

    def __post_init__(self) -> None:
        choices = {"method": METHODS, "precision": PRECISIONS, "device": DEVICE_SETTINGS,
                   "mask": MASKS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise TrainingError(f"Training setting '{name}' must be one of "
                                    f"{', '.join(allowed)}, not {getattr(self, name)!r}.",
                                    code="training_config_invalid")
        checks = {
            "lora_r": self.lora_r >= 1, "lora_alpha": self.lora_alpha >= 1,
            "lora_dropout": 0 <= self.lora_dropout < 1, "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1, "grad_accum": self.grad_accum >= 1,
            "lr": self.lr is None or self.lr > 0, "warmup_steps": self.warmup_steps >= 0,
            "weight_decay": self.weight_decay >= 0, "max_grad_norm": self.max_grad_norm >= 0,
            "max_tokens": self.max_tokens >= 8, "save_every": self.save_every >= 0,
            "keep_checkpoints": self.keep_checkpoints >= 0,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
            "base_model": bool(str(self.base_model).strip()), "run_dir": bool(self.run_dir),
        }
        for name, ok in checks.items():
            if not ok:
                raise TrainingError(f"Training setting '{name}' has an invalid value: "
                                    f"{getattr(self, name)!r}.", code="training_config_invalid")
        if self.precision in ("fp16", "bf16") and self.device == "cpu":
            raise TrainingError(f"Precision {self.precision} needs a CUDA GPU; on the CPU "
                                "training runs in fp32.", hint="Set precision to auto or fp32.",
                                code="training_config_invalid")
        if self.device_map not in (None, "auto"):
            raise TrainingError(f"device_map must be None or 'auto', not {self.device_map!r}.",
                                code="training_config_invalid")
        if self.device_map and self.method != "lora":
            raise TrainingError("device_map='auto' splits a frozen base over GPUs; it works "
                                "with method 'lora' only.", code="training_config_invalid")
        if self.target_modules is not None and not isinstance(self.target_modules, tuple):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))

    @property
    def learning_rate(self) -> float:
        """The peak learning rate (``lr``, else the method's default)."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def dataset_dir(self) -> Path:
        """The folder holding train.jsonl and validation.jsonl."""
        return Path(self.data_dir) if self.data_dir else Path(self.run_dir) / "dataset"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        data = dataclasses.asdict(self)
        if data["target_modules"] is not None:
            data["target_modules"] = list(data["target_modules"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from JSON, naming an unknown field."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"Unknown training setting '{unknown[0]}'.",
                                hint=f"Known settings: {', '.join(sorted(known))}.",
                                code="training_config_invalid")
        try:
            return cls(**data)
        except TypeError as err:
            raise TrainingError(f"Invalid training config: {err}.",
                                code="training_config_invalid") from err

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a ``config.json``."""
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as err:
            raise TrainingError(f"No training config at {path}.") from err
        except json.JSONDecodeError as err:
            raise TrainingError(f"{path} is not valid JSON (line {err.lineno}).") from err


@dataclass(frozen=True)
class TrainResult:
    """How a call to :func:`train` ended."""

    status: str  # "completed" or "cancelled"
    step: int  # optimizer steps done, over all sessions of the run
    total_steps: int  # optimizer steps of the whole run
    checkpoint: Path | None  # the newest checkpoint (None: none was due)
    final_dir: Path | None  # weights (or LoRA adapter) and tokenizer, once completed
    loss: float | None  # the last step's training loss
    resumed_from: int | None  # the step this call resumed at (None: started fresh)
    elapsed_s: float  # training seconds over all sessions


class EpochSampler:
    """Indices in a shuffled order that depends only on the seed and the epoch.

    Its own generator, not torch's global one, so dropout and data order never disturb each
    other, and a resumed run reproduces any epoch's order without replaying earlier ones.
    """

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's order the next iteration yields."""
        self.epoch = epoch

    def __iter__(self):
        import torch

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


def resolve_precision(config: TrainConfig) -> tuple[str, str]:
    """``(device, mixed_precision)``: where the run goes and accelerate's precision setting."""
    import torch

    has_cuda = torch.cuda.is_available()
    if config.device == "cuda" and not has_cuda:
        raise TrainingError("The device is set to CUDA, but PyTorch sees no CUDA GPU.",
                            hint="Set the device to auto or cpu.", code="cuda_unavailable")
    device = "cuda" if config.device == "cuda" or (config.device == "auto" and has_cuda) \
        else "cpu"
    if device == "cpu" and config.precision in ("fp16", "bf16"):
        raise TrainingError(f"Precision {config.precision} needs a CUDA GPU, and this run is on "
                            "the CPU.", hint="Set precision to auto or fp32.",
                            code="training_config_invalid")
    if config.precision == "fp32" or device == "cpu":
        return device, "no"
    if config.precision == "auto":
        # Real bf16 only (Ampere and newer): older cards (1080 Ti, T4, V100) would emulate it
        # slowly, and fp16 with loss scaling is what they are fast at.
        return device, "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) \
            else "fp16"
    return device, config.precision


def train(config: TrainConfig, *, progress: Callable[[dict[str, Any]], None] | None = None,
          cancel: CancelToken | None = None) -> TrainResult:
    """Run (or resume) the training ``config`` describes.

    Args:
        config: the run's settings.
        progress: called on the main process after every optimizer step with ``step``,
            ``total_steps``, ``epoch``, ``loss``, ``lr``, ``tokens_per_s``, ``eta_s`` and, on
            CUDA, ``peak_memory_bytes``.
        cancel: when set, the run saves a checkpoint at the next optimizer step and returns
            with status "cancelled"; calling again resumes it.

    Raises:
        TrainingError: bad settings, missing data or base model, or a run folder that holds a
            run with different settings.

    """
    from accelerate import Accelerator

    run_dir = Path(config.run_dir).expanduser().resolve()
    device, mixed = resolve_precision(config)
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed,
                              gradient_accumulation_steps=config.grad_accum)
    try:
        if config.device_map and accelerator.num_processes > 1:
            raise TrainingError("device_map='auto' is for one process; under accelerate launch "
                                "use FSDP or DeepSpeed to split the model.",
                                code="training_config_invalid")
        session = _Session(accelerator, config, run_dir, mixed)
        return session.run(progress, cancel)
    finally:
        _release(accelerator)


class _Session:
    """One call of :func:`train`: the prepared objects, then the loop."""

    def __init__(self, accelerator: Any, config: TrainConfig, run_dir: Path, mixed: str):
        import torch
        from accelerate.utils import set_seed
        from transformers import get_linear_schedule_with_warmup

        from training.base import add_lora, load_model, load_tokenizer, prompt_style, resolve_base

        self.accelerator, self.config, self.run_dir = accelerator, config, run_dir
        main = accelerator.is_main_process
        self.resume = checkpoints.latest(run_dir)
        if self.resume is not None:
            _check_same_run(run_dir, config)
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            checkpoints.clean_partial(run_dir)
            checkpoints.write_text_atomic(run_dir / CONFIG_FILE,
                                          json.dumps(config.to_dict(), indent=2) + "\n")
        set_seed(config.seed)

        # Data.
        with accelerator.main_process_first():  # a first GGUF conversion happens once
            base = resolve_base(config.base_model)
        self.tokenizer = load_tokenizer(base)
        prompt_format, system_prompt = prompt_style(base, self.tokenizer)
        examples = encode_all(read_instances(config.dataset_dir / "train.jsonl"),
                              self.tokenizer, max_tokens=config.max_tokens,
                              mask=cast(Mask, config.mask),  # __post_init__ checked it
                              prompt_format=prompt_format, system_prompt=system_prompt)
        if not examples:
            raise TrainingError("The training set has no dialogue with a reply to learn.",
                                hint="Check the dataset stage's output and the loss mask.")
        # A list is a map-style dataset (__getitem__ and __len__ are all DataLoader uses), but
        # torch annotates the argument as its Dataset class.
        loader: torch.utils.data.DataLoader[tuple[list[int], list[int]]]
        loader = torch.utils.data.DataLoader(
            examples,  # type: ignore[arg-type]
            batch_size=config.batch_size, sampler=EpochSampler(len(examples), config.seed),
            collate_fn=Collator(pad_token_id(self.tokenizer)),
            # Its own generator: creating an iterator draws from it, not from the global RNG
            # that dropout uses, so a resumed run's dropout masks match an uninterrupted run's.
            generator=torch.Generator().manual_seed(config.seed))

        # Model: fp32 master weights, except a frozen LoRA base, which may sit in 16-bit.
        self.lora = config.method == "lora"
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed)
        model = load_model(base, dtype=half if self.lora and half else torch.float32,
                           device_map=config.device_map)
        model.config.use_cache = False
        if config.gradient_checkpointing:
            _enable_checkpointing(model)
        if self.lora:
            model = add_lora(model, r=config.lora_r, alpha=config.lora_alpha,
                             dropout=config.lora_dropout, target_modules=config.target_modules)
        optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay),
                                      lr=config.learning_rate)
        placement = [False, True, True] if config.device_map else None
        self.model, self.optimizer, self.loader = accelerator.prepare(
            model, optimizer, loader, device_placement=placement)
        self.batches_per_epoch = len(self.loader)
        total = config.epochs * math.ceil(self.batches_per_epoch / config.grad_accum)
        self.total = min(total, config.max_steps) if config.max_steps else total
        # accelerate steps a prepared scheduler once per process per optimizer step.
        n = accelerator.num_processes
        self.scheduler = accelerator.prepare(get_linear_schedule_with_warmup(
            self.optimizer, config.warmup_steps * n, self.total * n))
        if self.lora:
            _checkpoint_adapter_only(accelerator)

        # Resume: weights, optimizer, scheduler, RNG states, then the data position.
        self.position = Position()
        if self.resume is not None:
            accelerator.load_state(str(self.resume), strict=not self.lora)
            self.position = checkpoints.read_position(self.resume)
        if main:
            _trim_log(run_dir / LOG_FILE, self.position.step)

    def run(self, progress: Callable[[dict[str, Any]], None] | None,
            cancel: CancelToken | None) -> TrainResult:
        import torch

        acc, config, position = self.accelerator, self.config, self.position
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        status, last_loss, saved = "completed", None, self.resume
        start, start_step, start_tokens = time.monotonic(), position.step, position.tokens
        base_elapsed = position.elapsed
        if cancel is not None and cancel.cancelled:  # cancelled while the model was loading
            acc.set_trigger()
        if acc.check_trigger():
            return TrainResult("cancelled", position.step, self.total, saved, None, None,
                               start_step if self.resume is not None else None, base_elapsed)
        self.model.train()
        while position.step < self.total:
            self.loader.set_epoch(position.epoch)
            batches = self.loader
            if position.batch:
                batches = acc.skip_first_batches(self.loader, position.batch)
                batches.set_epoch(position.epoch)
            micro_losses: list[Any] = []
            stop = done = False
            for batch in batches:
                with acc.accumulate(self.model):
                    loss = self.model(**batch).loss
                    acc.backward(loss)
                    if acc.sync_gradients and config.max_grad_norm:
                        acc.clip_grad_norm_(trainable, config.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad()
                position.batch += 1
                position.tokens += int(batch["attention_mask"].sum()) * acc.num_processes
                micro_losses.append(loss.detach().float())
                if not acc.sync_gradients:
                    continue
                position.step += 1
                if position.batch >= self.batches_per_epoch:
                    position.epoch, position.batch = position.epoch + 1, 0
                last_loss = acc.reduce(torch.stack(micro_losses).mean(), "mean").item()
                micro_losses = []
                position.elapsed = base_elapsed + time.monotonic() - start
                if acc.is_main_process:
                    self._report(last_loss, start_step, start_tokens, base_elapsed, progress)
                if cancel is not None and cancel.cancelled:
                    acc.set_trigger()
                stop = acc.check_trigger()  # any process cancelled: all stop together
                done = position.step >= self.total
                # No forced checkpoint at the end: final/ holds the weights, and a big model's
                # optimizer state would only fill the disk.
                if stop or (config.save_every and position.step % config.save_every == 0):
                    saved = checkpoints.save(acc, self.run_dir, position,
                                             keep=config.keep_checkpoints)
                if stop or done:
                    break
            if stop:
                status = "cancelled"
                break
            if not done and position.batch:  # defensive: an epoch must end at its last batch
                raise TrainingError("The data loader ended an epoch early.")
        final = None
        if status == "completed":
            final = _save_final(acc, self.model, self.tokenizer, self.run_dir)
        return TrainResult(status, position.step, self.total, saved, final, last_loss,
                           start_step if self.resume is not None else None,
                           base_elapsed + time.monotonic() - start)

    def _report(self, loss: float, start_step: int, start_tokens: int, base_elapsed: float,
                progress: Callable[[dict[str, Any]], None] | None) -> None:
        import torch

        position = self.position
        session = max(position.elapsed - base_elapsed, 1e-9)
        lr = self.scheduler.get_last_lr()[0]
        epoch = round(position.epoch + position.batch / max(self.batches_per_epoch, 1), 4)
        line = {"step": position.step, "epoch": epoch, "loss": round(loss, 6), "lr": lr,
                "tokens": position.tokens, "elapsed": round(position.elapsed, 3)}
        with (self.run_dir / LOG_FILE).open("a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")
        if progress is None:
            return
        info = {"step": position.step, "total_steps": self.total, "epoch": epoch, "loss": loss,
                "lr": lr, "tokens_per_s": (position.tokens - start_tokens) / session,
                "eta_s": (self.total - position.step) * session
                / max(position.step - start_step, 1)}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            info["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
        progress(info)


def _enable_checkpointing(model: Any) -> None:
    # Non-reentrant checkpointing: it needs no input that requires grad, so it works under a
    # frozen LoRA base too. transformers 5 renamed the method; older releases have the old one.
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    # Biases and norm scales (1-D tensors) are not decayed, as in GPT-2 and nanoGPT.
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def _checkpoint_adapter_only(accelerator: Any) -> None:
    """Checkpoint a LoRA run's trainable weights only, not a copy of the frozen base each time."""

    def keep_trainable(models: list[Any], weights: list[dict[str, Any]], _dir: str) -> None:
        for model, state in zip(models, weights, strict=False):
            names = {n for n, p in model.named_parameters() if p.requires_grad}
            for key in [k for k in state if k not in names]:
                del state[key]

    accelerator.register_save_state_pre_hook(keep_trainable)


def _check_same_run(run_dir: Path, config: TrainConfig) -> None:
    path = run_dir / CONFIG_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TrainingError(f"{run_dir} has checkpoints but no readable {CONFIG_FILE}.",
                            hint="Delete its checkpoints folder to start over.",
                            code="training_config_mismatch") from err
    current = config.to_dict()
    for name, value in current.items():
        if name not in RESUMABLE_CHANGES and saved.get(name) != value:
            raise TrainingError(
                f"{run_dir.name} holds a run with other settings ({name}: {saved.get(name)!r} "
                f"there, {value!r} now), so it cannot be resumed with these.",
                hint="Use the same settings, a new run folder, or delete its checkpoints "
                     "folder to start over.",
                code="training_config_mismatch")


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint being resumed (they will be written again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line half-written when the process was killed
            continue
        if step and isinstance(entry, dict) and entry.get("step", 0) <= step:
            kept.append(line)
    checkpoints.write_text_atomic(path, "".join(line + "\n" for line in kept))


def _save_final(accelerator: Any, model: Any, tokenizer: Any, run_dir: Path) -> Path:
    """Write ``final/``: the whole model, or the LoRA adapter, with the tokenizer."""
    accelerator.wait_for_everyone()
    state = accelerator.get_state_dict(model)  # gathers shards under FSDP/DeepSpeed
    target = run_dir / FINAL_DIR
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.config.use_cache = True  # off for training only
        old = run_dir / f".{FINAL_DIR}-old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.replace(old)
        with atomic_folder(target) as tmp:
            unwrapped.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return target


def _release(accelerator: Any) -> None:
    """Forget accelerate's process-wide state so another run in this process starts clean."""
    accelerator.free_memory()
    if accelerator.num_processes == 1:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


# --- command line ---


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Fine-tune a model on a run folder's dataset (resumes when interrupted).")
    parser.add_argument("--config", type=Path, help="a config.json; other options override it")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = str(field.type)
        if "bool" in kind:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS)
        elif "tuple" in kind:
            parser.add_argument(flag, nargs="+", default=argparse.SUPPRESS)
        else:
            convert = int if "int" in kind else float if "float" in kind else str
            parser.add_argument(flag, type=convert, default=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: train, print progress, exit 0 (done), 1 (error) or 130 (stopped)."""
    import signal

    args = vars(_parser().parse_args(argv))
    config_path = args.pop("config", None)
    try:
        data = json.loads(Path(config_path).read_text(encoding="utf-8")) if config_path else {}
        data.update(args)
        config = TrainConfig.from_dict(data)
    except (OSError, ValueError) as err:
        print(f"error: cannot read the config: {err}", file=sys.stderr)
        return 1
    except TrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    cancel = CancelToken()
    for sig in (signal.SIGINT, signal.SIGTERM):  # checkpoint, then stop
        signal.signal(sig, lambda *_: cancel.cancel())

    def show(info: dict[str, Any]) -> None:
        print(f"step {info['step']}/{info['total_steps']}  epoch {info['epoch']:.2f}  "
              f"loss {info['loss']:.4f}  lr {info['lr']:.2e}  "
              f"{info['tokens_per_s']:.0f} tok/s  eta {info['eta_s']:.0f} s", flush=True)

    try:
        result = train(config, progress=show, cancel=cancel)
    except TrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") != "0":  # other processes of a launch say nothing
        return 130 if result.status == "cancelled" else 0
    if result.status == "cancelled":
        print(f"stopped at step {result.step}; checkpoint {result.checkpoint}", flush=True)
        return 130
    print(f"done: {result.step} steps, weights in {result.final_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
