"""Checkpoints of a run: ``checkpoints/step-N`` folders and a ``checkpoints/latest`` pointer.

Each checkpoint is written by ``accelerator.save_state`` into a hidden temporary folder, then
renamed into place, and only then does ``latest`` (a one-line text file, replaced atomically)
name it. A process killed at any moment therefore leaves ``latest`` naming a complete checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.fsutil import atomic_write_text

LATEST = "latest"
STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class Position:
    """Where training stands; saved beside the accelerate state as ``trainer_state.json``."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch being read
    batch: int = 0  # batches of that epoch already consumed (per process)
    tokens: int = 0  # tokens trained on so far, all processes
    elapsed: float = 0.0  # seconds spent training, over all sessions of the run


def folder(run_dir: Path) -> Path:
    """The run's checkpoints folder."""
    return run_dir / "checkpoints"


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so readers see the old or the new content, never half."""
    atomic_write_text(path, text)


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint: the one ``latest`` names, else the highest step."""
    root = folder(run_dir)
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text(encoding="utf-8").strip()
        if (named / STATE_FILE).is_file():
            return named
    complete = [(int(m.group(1)), p) for p in root.glob("step-*")
                if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()]
    return max(complete)[1] if complete else None


def read_position(checkpoint: Path) -> Position:
    """The position saved in ``checkpoint``."""
    data = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    return Position(**{k: data[k] for k in asdict(Position()) if k in data})


def save(accelerator: Any, run_dir: Path, position: Position, *, keep: int) -> Path:
    """Save the full training state at ``position`` (every process must call this)."""
    root = folder(run_dir)
    name = f"step-{position.step}"
    tmp, target = root / f".{name}.tmp", root / name
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if main:
        (tmp / STATE_FILE).write_text(json.dumps(asdict(position), indent=2), encoding="utf-8")
        if target.exists():  # the same step saved again (e.g. cancelled right after resuming)
            shutil.rmtree(target)
        os.replace(tmp, target)
        write_text_atomic(root / LATEST, name + "\n")
        _prune(root, keep=keep, current=target)
    accelerator.wait_for_everyone()
    return target


def _prune(root: Path, *, keep: int, current: Path) -> None:
    steps = sorted((int(m.group(1)), p) for p in root.glob("step-*")
                   if (m := _STEP_DIR.match(p.name)))
    if keep > 0:
        for _, path in steps[:-keep]:
            if path != current:
                shutil.rmtree(path, ignore_errors=True)


def clean_partial(run_dir: Path) -> None:
    """Remove temporary folders a killed save left behind."""
    for path in folder(run_dir).glob(".step-*.tmp"):
        shutil.rmtree(path, ignore_errors=True)
