"""Stage 3, dataset: training instances of 2–5 consecutive turns, split by thread.

Windowing rule. A thread's comment tree gives its root-to-leaf paths ``t0, t1, ..., tn`` (t0 is
the submission). For every reply ``tj`` (j >= 1) of a path, the instance is ``tj`` with up to
``max_turns - 1`` turns before it: ``t[max(0, j - max_turns + 1) : j + 1]``; instances shorter
than ``min_turns`` are skipped. So every reply is trained once with up to 4 turns of context
(DialoGPT's 5-turn instances). Paths share their beginnings; a window is taken once per reply
(comment), not once per leaf below it (``thread_windows`` walks the tree, same set as the
windows of ``root_to_leaf_paths``). Identical instances (same turns, anywhere in the run, after
trimming) are then kept only once and counted as ``duplicates``.

Token limit. Each turn is followed by EOS (``tok(t1)+eos+tok(t2)+eos+...``, the encoding the
trainer uses); an instance over ``max_tokens`` drops its oldest turns until it fits, keeping at
least ``min_turns``, else it is dropped and counted as ``too_long``. Trimming happens before
de-duplication.

Split. Threads (a user file's conversations) with at least one instance are shuffled with
``random.Random(seed)``; the first ``n * validation_fraction`` of them, rounded half up (at
least 1 when there are 2 or more threads and the fraction is above 0, never all of them), go to
validation, so no thread is in both files.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, MissingDependencyError
from engine.fsutil import open_atomic
from training.errors import TrainingError
from training.filter import read_threads, submission_text


@dataclass(frozen=True)
class DatasetInfo:
    """What ``build_dataset`` wrote; ``as_dict()`` is ``dataset.json``."""

    source: str  # "reddit" (filtered threads) or "file" (a user's dialogue file)
    base_model: str  # whose tokenizer measured the instances
    max_tokens: int  # limit on an instance's turns joined by EOS
    min_turns: int
    max_turns: int
    validation_fraction: float
    seed: int  # of the thread split
    train: int  # instances in train.jsonl
    validation: int  # instances in validation.jsonl
    train_threads: int
    validation_threads: int
    too_long: int  # instances dropped: even the newest min_turns turns exceed max_tokens
    duplicates: int  # identical instances dropped

    def as_dict(self) -> dict[str, Any]:
        """The contents of ``dataset.json``."""
        return {
            "source": self.source, "base_model": self.base_model, "max_tokens": self.max_tokens,
            "counts": {"train": self.train, "validation": self.validation},
            "seed": self.seed, "min_turns": self.min_turns, "max_turns": self.max_turns,
            "validation_fraction": self.validation_fraction,
            "threads": {"train": self.train_threads, "validation": self.validation_threads},
            "dropped": {"too_long": self.too_long, "duplicates": self.duplicates},
        }


def clean_turn(text: str) -> str:
    """One line of text: runs of spaces and newlines become one space."""
    return " ".join(text.split())


def root_to_leaf_paths(thread: dict[str, Any]) -> list[list[str]]:
    """The turns of every path from the submission to a comment with no (kept) reply."""
    children: dict[str, list[dict[str, Any]]] = {}
    for comment in thread["comments"]:
        children.setdefault(comment["parent_id"], []).append(comment)
    paths: list[list[str]] = []
    # Depth-first without recursion: (turns so far, replies of the path's last turn).
    stack = [([clean_turn(submission_text(thread))], children.get(f"t3_{thread['id']}", []))]
    while stack:
        turns, replies = stack.pop()
        if not replies:
            paths.append(turns)
        for reply in reversed(replies):  # reversed: popped, and so listed, in file order
            stack.append((turns + [clean_turn(reply["body"])],
                          children.get(f"t1_{reply['id']}", [])))
    return paths


def windows(turns: list[str], *, min_turns: int = 2, max_turns: int = 5) -> Iterator[list[str]]:
    """Each reply of ``turns`` with up to ``max_turns - 1`` turns before it (module docstring)."""
    for j in range(1, len(turns)):
        window = turns[max(0, j - max_turns + 1): j + 1]
        if len(window) >= min_turns:
            yield window


def thread_windows(thread: dict[str, Any], *, min_turns: int = 2,
                   max_turns: int = 5) -> Iterator[list[str]]:
    """The window ending at each comment of a thread, depth-first in file order."""
    children: dict[str, list[dict[str, Any]]] = {}
    for comment in thread["comments"]:
        children.setdefault(comment["parent_id"], []).append(comment)
    root = [clean_turn(submission_text(thread))]
    # (the last turns before this comment, the comment); reversed: popped in file order.
    stack = [(root, c) for c in reversed(children.get(f"t3_{thread['id']}", []))]
    while stack:
        before, comment = stack.pop()
        window = (before + [clean_turn(comment["body"])])[-max_turns:]
        if len(window) >= min_turns:
            yield window
        stack.extend((window, c) for c in reversed(children.get(f"t1_{comment['id']}", [])))


def fit(turns: list[str], lengths: list[int], max_tokens: int, min_turns: int) -> list[str] | None:
    """``turns`` without its oldest turns until they fit ``max_tokens`` with EOS after each."""
    total = sum(lengths) + len(lengths)
    start = 0
    while total > max_tokens and len(turns) - start > min_turns:
        total -= lengths[start] + 1
        start += 1
    return turns[start:] if total <= max_tokens else None


def build_dataset(source: Path, out_dir: Path, *, base_model: str | Path, max_tokens: int = 128,
                  min_turns: int = 2, max_turns: int = 5, validation_fraction: float = 0.1,
                  seed: int = 0, progress: Callable[[int], None] | None = None) -> DatasetInfo:
    """Write ``train.jsonl``, ``validation.jsonl`` and ``dataset.json`` into ``out_dir``.

    Args:
        source: the filter stage's ``threads.jsonl``, or a dialogue file (``.jsonl`` lines
            ``{"turns": [...]}`` or bare lists of strings; ``.csv`` with columns
            ``conversation,text``).
        out_dir: the stage folder (normally ``<run>/dataset``); created if missing.
        base_model: Hub id or folder whose tokenizer measures the token limit.
        max_tokens: most tokens of an instance, EOS after each turn included (DialoGPT: 128).
        min_turns: fewest turns of an instance (context + reply).
        max_turns: most turns of an instance.
        validation_fraction: share of threads held out for validation.
        seed: seed of the thread split.
        progress: called with the number of threads (conversations) done.

    Raises:
        TrainingError: the source is damaged (the message names the line) or gives no instance.
        ConfigError: the options make no sense.

    """
    if not 2 <= min_turns <= max_turns:
        raise ConfigError(f"Need 2 <= min_turns <= max_turns (got {min_turns}, {max_turns}).")
    if max_tokens < 2:
        raise ConfigError(f"max_tokens must be at least 2 (got {max_tokens}).")
    if not 0 <= validation_fraction < 1:
        raise ConfigError(f"validation_fraction must be in [0, 1) (got {validation_fraction}).")
    source, out_dir = Path(source), Path(out_dir)
    kind, conversations = _open_source(source, min_turns, max_turns)
    tokenizer = load_tokenizer(base_model)
    lengths: dict[str, int] = {}

    def length(text: str) -> int:
        if text not in lengths:
            lengths[text] = len(tokenizer.encode(text, add_special_tokens=False))
        return lengths[text]

    instances: list[tuple[str, list[str]]] = []
    seen: set[tuple[str, ...]] = set()
    too_long = duplicates = 0
    for done, (thread, thread_windows_) in enumerate(conversations, start=1):
        for window in thread_windows_:
            turns = fit(window, [length(t) for t in window], max_tokens, min_turns)
            if turns is None:
                too_long += 1
            elif tuple(turns) in seen:
                duplicates += 1
            else:
                seen.add(tuple(turns))
                instances.append((thread, turns))
        if progress is not None:
            progress(done)
    if not instances:
        raise TrainingError(
            f"{source.name} gives no training instance ({too_long} too long for "
            f"max_tokens={max_tokens}).",
            hint="Use more data, or raise max_tokens.")
    held_out = split_threads([t for t, _ in instances], validation_fraction, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, in_split in (("train", False), ("validation", True)):
        with open_atomic(out_dir / f"{name}.jsonl") as out:
            rows = [(t, turns) for t, turns in instances if (t in held_out) == in_split]
            for thread, turns in rows:
                out.write(json.dumps({"thread": thread, "turns": turns}, ensure_ascii=False))
                out.write("\n")
        counts[name] = len(rows)
    n_threads = len(dict.fromkeys(t for t, _ in instances))
    info = DatasetInfo(kind, str(base_model), max_tokens, min_turns, max_turns,
                       validation_fraction, seed, counts["train"], counts["validation"],
                       n_threads - len(held_out), len(held_out), too_long, duplicates)
    with open_atomic(out_dir / "dataset.json") as out:
        json.dump(info.as_dict(), out, indent=2)
    return info


def split_threads(threads: Iterable[str], validation_fraction: float, seed: int) -> set[str]:
    """The threads held out for validation (see the module docstring)."""
    order = list(dict.fromkeys(threads))
    random.Random(seed).shuffle(order)
    count = 0
    if len(order) >= 2 and validation_fraction > 0:
        count = min(len(order) - 1, max(1, int(len(order) * validation_fraction + 0.5)))
    return set(order[:count])


def load_tokenizer(base_model: str | Path) -> Any:
    """The base model's tokenizer (a Hub id in the cache, or a folder)."""
    try:
        from transformers import AutoTokenizer
    except ImportError as err:
        raise MissingDependencyError("transformers is not installed.",
                                     hint="pip install transformers") from err
    try:
        return AutoTokenizer.from_pretrained(str(base_model))
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise TrainingError(f"Could not load the tokenizer of {base_model}: {first}",
                            hint="Pull the base model first, or pass its folder.") from err


def _open_source(source: Path, min_turns: int, max_turns: int) -> tuple[
        str, Iterator[tuple[str, Iterable[list[str]]]]]:
    """("reddit" | "file", the (thread id, windows) of each thread or conversation)."""
    if not source.is_file():
        raise TrainingError(f"No such file: {source}.")
    suffix = source.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise TrainingError(f"{source.name}: unknown kind of file; use .jsonl or .csv.")
    if suffix == ".jsonl" and _looks_like_threads(source):
        threads = ((t["id"], thread_windows(t, min_turns=min_turns, max_turns=max_turns))
                   for _, t in read_threads(source))
        return "reddit", threads
    read = read_dialogue_csv if suffix == ".csv" else read_dialogue_jsonl
    conversations = ((conv, windows(turns, min_turns=min_turns, max_turns=max_turns))
                     for conv, turns in read(source))
    return "file", conversations


def _looks_like_threads(path: Path) -> bool:
    """Whether the first non-blank line is a thread (has "comments"), not a conversation."""
    with open(path, "rb") as lines:
        for raw in lines:
            if raw.strip():
                try:
                    first = json.loads(raw)
                except ValueError:  # damaged: let the dialogue reader name the line
                    return False
                return isinstance(first, dict) and "comments" in first
    return False


def read_dialogue_jsonl(path: Path) -> list[tuple[str, list[str]]]:
    """Conversations of a JSONL dialogue file: ``(id, turns)``, ids "1", "2"... unless given.

    Raises:
        TrainingError: naming the line of the first problem.

    """
    where = path.name
    conversations: list[tuple[str, list[str]]] = []
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                text = raw.decode("utf-8").lstrip("\ufeff")
            except UnicodeDecodeError as err:
                raise TrainingError(f"{where}, line {number}: not UTF-8 text.",
                                    hint="Save the file as UTF-8.") from err
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as err:
                raise TrainingError(f"{where}, line {number}: not valid JSON ({err.msg}).") \
                    from err
            turns = item.get("turns") if isinstance(item, dict) else item
            if not isinstance(turns, list):
                raise TrainingError(f"{where}, line {number}: expected a list of turns or an "
                                    'object with a "turns" list.')
            conv = item.get("id") if isinstance(item, dict) else None
            conv = str(len(conversations) + 1) if conv is None else str(conv)
            conversations.append((conv, _check_turns(turns, f"{where}, line {number}")))
    if not conversations:
        raise TrainingError(f"{where} is empty: no conversations.")
    return conversations


def _check_turns(turns: list[Any], where: str) -> list[str]:
    if not turns:
        raise TrainingError(f"{where}: the conversation has no turns.")
    if len(turns) == 1:
        raise TrainingError(f"{where}: the conversation has only one turn; it needs at least 2.")
    for k, turn in enumerate(turns, start=1):
        if not isinstance(turn, str):
            raise TrainingError(f"{where}: turn {k} is not text.")
        if not turn.strip():
            raise TrainingError(f"{where}: turn {k} is empty.")
    return [clean_turn(t) for t in turns]


def read_dialogue_csv(path: Path) -> list[tuple[str, list[str]]]:
    """Conversations of a CSV dialogue file (columns ``conversation,text``, rows in order).

    Raises:
        TrainingError: naming the line of the first problem.

    """
    where = path.name
    raw = path.read_bytes()
    if not raw.strip():
        raise TrainingError(f"{where} is empty: no conversations.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise TrainingError(f"{where}, line {line}: not UTF-8 text.",
                            hint="Save the file as UTF-8.") from err
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader)]
    if "conversation" not in header or "text" not in header:
        raise TrainingError(f"{where}, line 1: the header must name the columns "
                            f"conversation,text (found: {','.join(header)}).")
    conv_col, text_col = header.index("conversation"), header.index("text")
    turns: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    line = reader.line_num
    for row in reader:
        start, line = line + 1, reader.line_num  # a quoted field may span lines
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise TrainingError(f"{where}, line {start}: {len(row)} columns, expected "
                                f"{len(header)} ({','.join(header)}).")
        conv, turn = row[conv_col].strip(), row[text_col]
        if not conv:
            raise TrainingError(f"{where}, line {start}: no conversation id.")
        if not turn.strip():
            raise TrainingError(f"{where}, line {start}: the text is empty.")
        turns.setdefault(conv, []).append(clean_turn(turn))
        first_line.setdefault(conv, start)
    if not turns:
        raise TrainingError(f"{where} has a header but no conversations.")
    for conv, conv_turns in turns.items():
        if len(conv_turns) < 2:
            raise TrainingError(f"{where}, line {first_line[conv]}: conversation '{conv}' has "
                                "only one turn; it needs at least 2.")
    return list(turns.items())
