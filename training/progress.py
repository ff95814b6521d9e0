"""What a watcher of ``train all --progress-json`` shows: stage marks, bar text, figures.

The app's training dialog reads the trainer's JSON lines as ``training.messages.ProgressMessage``.
The wording, and the small decisions made from those messages (which stages a source goes
through, where a stopped run stands, whether a run can be resumed, how the evaluation reads), live
here, free of Qt, so they are tested with plain data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.messages import ProgressMessage
from training.runs import STAGES

if TYPE_CHECKING:
    from training.train import TrainConfig

STAGE_NAMES = {"scrape": "Fetch threads", "filter": "Filter", "dataset": "Build dataset",
               "train": "Fine-tune", "evaluate": "Evaluate", "export": "Export persona"}
# Marks beside a stage's name. Only characters DejaVu Sans (the usual Linux UI font) has, so no
# missing-glyph box shows: it has ▶ ✓ ✗ ■ but not the pause sign ⏸ (U+23F8).
STAGE_MARKS = {"running": "▶", "done": "✓", "stopped": "■", "failed": "✗"}
# A stage's state in words (tooltips, screen readers); "unused": the source does not need it.
STATE_WORDS = {"": "not started", "running": "running", "done": "done", "stopped": "stopped",
               "failed": "failed", "skipped": "skipped", "unused": "not needed for this source"}
_FILE_ONLY_SKIPS = ("scrape", "filter")  # a dialogue file is already dialogues
MODEL_WORDS = {"base": "base model", "finetuned": "fine-tuned model"}


def stages_for(dialogue_file: bool) -> tuple[str, ...]:
    """The stages a run goes through: a dialogue file needs no fetching and no filtering."""
    return tuple(s for s in STAGES if not (dialogue_file and s in _FILE_ONLY_SKIPS))


def stage_text(stage: str, state: str) -> str:
    """A stage's label: its name, with a mark for running, done, stopped or failed."""
    name = STAGE_NAMES[stage]
    if state == "skipped":
        return f"{name} (skipped)"
    mark = STAGE_MARKS.get(state)
    return f"{mark} {name}" if mark else name


def stopped_text(step: int | None, total: int | None) -> str:
    """Where a stopped training run stands, for the progress bar: no ETA, no 100 %."""
    if step and total:
        return f"Stopped at step {step} of {total}"
    return f"Stopped at step {step}" if step else "Stopped"


def evaluate_text(message: ProgressMessage) -> str:
    """What the evaluate stage is doing, from one of its progress reports."""
    phase, model = message.phase, MODEL_WORDS.get(message.model or "", "model")
    done, total = message.done or 0, message.total or 0
    if phase == "load":
        return f"Loading the {model}…"
    if phase == "score":
        return f"Scoring the validation set with the {model}: {done}/{total} batches…"
    if phase == "reply":
        return f"Writing sample replies with the {model} {done}/{total}"
    return message.title or ""


def evaluation_summary(figures: Mapping[str, Any]) -> str:
    """The evaluation as text: perplexity base → fine-tuned, then each sample prompt's replies."""
    perplexity = figures.get("perplexity") or {}
    examples = (figures.get("validation") or {}).get("examples")
    where = f" on {examples} validation dialogue{'s' if examples != 1 else ''}" if examples else ""
    lines = [f"Perplexity{where} (lower is better): base {_figure(perplexity.get('base'))} → "
             f"fine-tuned {_figure(perplexity.get('finetuned'))}"]
    samples = figures.get("samples") or []
    if samples:
        lines += ["", "Sample replies:"]
        for sample in samples:
            lines += [f"You: {sample.get('prompt', '')}",
                      f"    base: {sample.get('base_reply') or '(no reply)'}",
                      f"    fine-tuned: {sample.get('reply') or '(no reply)'}"]
    return "\n".join(lines)


def _figure(value: Any) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "n/a"
    return "infinite" if math.isinf(value) else f"{value:.1f}"


def read_evaluation(run: Path) -> dict[str, Any] | None:
    """The figures a run's evaluate stage saved (``eval.json``), if they are there and current."""
    path, final = run / "eval.json", run / "final"
    try:
        if final.exists() and final.stat().st_mtime > path.stat().st_mtime:
            return None  # figures of an earlier fine-tune
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def resume_point(run: Path, config: TrainConfig) -> int | None:
    """The step a run of ``config`` in ``run`` carries on from; None: it does not resume.

    A run resumes when its folder holds a complete checkpoint of training that has not finished,
    saved with the same settings (those that may change between sessions aside).
    """
    from training import checkpoints
    from training.train import CONFIG_FILE, FINAL_DIR, RESUMABLE_CHANGES

    try:
        latest = checkpoints.latest(run)
        if latest is None or (run / FINAL_DIR).exists():
            return None
        saved = json.loads((run / CONFIG_FILE).read_text(encoding="utf-8"))
        wanted = json.loads(json.dumps(config.to_dict()))
        if any(saved.get(k) != v for k, v in wanted.items() if k not in RESUMABLE_CHANGES):
            return None
        return checkpoints.read_position(latest).step
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
