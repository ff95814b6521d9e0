"""Dataset stage: windows over the comment tree, token limit, split by thread, dialogue files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from engine.errors import ConfigError
from tests.test_filter import THREADS, comment, thread, write_threads
from training.dataset import (
    build_dataset,
    load_tokenizer,
    root_to_leaf_paths,
    split_threads,
    thread_windows,
    windows,
)
from training.errors import TrainingError
from training.filter import filter_threads

# A hand-made tree: R -> a -> b -> c -> d -> e -> f, a -> g, R -> h.
TREE = thread("t1", "R", [
    comment("a", "t3_t1", "a"), comment("b", "t1_a", "b"), comment("c", "t1_b", "c"),
    comment("d", "t1_c", "d"), comment("e", "t1_d", "e"), comment("f", "t1_e", "f"),
    comment("g", "t1_a", "g"), comment("h", "t3_t1", "h"),
])
TREE_WINDOWS = [
    ["R", "a"], ["R", "a", "b"], ["R", "a", "b", "c"], ["R", "a", "b", "c", "d"],
    ["a", "b", "c", "d", "e"], ["b", "c", "d", "e", "f"], ["R", "a", "g"], ["R", "h"],
]
CONVERSATIONS = [
    ["hello there how are you today", "i am fine thanks and you", "what is the weather like"],
    ["do you like music, or movies more?", "movies\nmostly", "the quick brown fox"],
    ["it is sunny", "and warm near the campus"],
    ["hello", "hi", "how are you", "fine", "and you", "good", "bye"],
]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_instances(out_dir: Path) -> list[dict]:
    return read_jsonl(out_dir / "train.jsonl") + read_jsonl(out_dir / "validation.jsonl")


def write_dialogue_jsonl(path: Path, conversations: list[list[str]]) -> Path:
    # Both accepted line shapes: objects with "turns" and bare lists.
    lines = [json.dumps({"turns": c} if i % 2 else c) for i, c in enumerate(conversations)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_dialogue_csv(path: Path, conversations: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["conversation", "text"])
        for i, turns in enumerate(conversations, start=1):
            writer.writerows([str(i), t] for t in turns)
    return path


def test_tree_windows_are_each_reply_with_up_to_four_turns_before_it():
    assert list(thread_windows(TREE)) == TREE_WINDOWS
    assert root_to_leaf_paths(TREE) == [["R", "a", "b", "c", "d", "e", "f"], ["R", "a", "g"],
                                        ["R", "h"]]
    # Same set as sliding windows over the root-to-leaf paths, once each.
    from_paths = {tuple(w) for p in root_to_leaf_paths(TREE) for w in windows(p)}
    assert from_paths == {tuple(w) for w in TREE_WINDOWS}
    assert list(thread_windows(TREE, min_turns=3, max_turns=3)) == [
        ["R", "a", "b"], ["a", "b", "c"], ["b", "c", "d"], ["c", "d", "e"], ["d", "e", "f"],
        ["R", "a", "g"]]


def test_built_instances_from_a_filtered_tree(tmp_path: Path, tiny_persona_dir: Path):
    src = write_threads(tmp_path / "threads.jsonl", [TREE])
    info = build_dataset(src, tmp_path / "dataset", base_model=tiny_persona_dir, max_tokens=1000)

    assert [i["turns"] for i in all_instances(tmp_path / "dataset")] == TREE_WINDOWS
    assert {i["thread"] for i in all_instances(tmp_path / "dataset")} == {"t1"}
    assert (info.source, info.train, info.validation, info.duplicates) == ("reddit", 8, 0, 0)
    meta = json.loads((tmp_path / "dataset" / "dataset.json").read_text(encoding="utf-8"))
    assert {"source": "reddit", "base_model": str(tiny_persona_dir), "max_tokens": 1000,
            "counts": {"train": 8, "validation": 0}, "seed": 0}.items() <= meta.items()


def test_submission_with_selftext_is_one_turn(tmp_path: Path):
    t = thread("s", "Title here", [comment("a", "t3_s", "Reply\n\n  text")], selftext="Body  text")
    assert list(thread_windows(t)) == [["Title here Body text", "Reply text"]]


def test_token_limit_trims_oldest_turns(tmp_path: Path, tiny_persona_dir: Path):
    tok = load_tokenizer(tiny_persona_dir)
    t0, t1, t2 = CONVERSATIONS[0]
    n0, n1, n2 = (len(tok.encode(t, add_special_tokens=False)) for t in (t0, t1, t2))
    limit = max(n0 + n1, n1 + n2) + 2  # any two turns fit (EOS after each), three do not
    assert limit < n0 + n1 + n2 + 3
    src = write_dialogue_jsonl(tmp_path / "d.jsonl", [[t0, t1, t2]])

    info = build_dataset(src, tmp_path / "out", base_model=tiny_persona_dir, max_tokens=limit)
    assert [i["turns"] for i in all_instances(tmp_path / "out")] == [[t0, t1], [t1, t2]]
    assert info.too_long == 0


def test_instance_that_cannot_fit_is_dropped_and_counted(tmp_path: Path, tiny_persona_dir: Path):
    long_turn = " ".join(["the quick brown fox jumps over the lazy dog"] * 20)
    src = write_dialogue_jsonl(tmp_path / "d.jsonl", [["hi there", long_turn, "ok"],
                                                      ["hello", "hi"]])
    info = build_dataset(src, tmp_path / "out", base_model=tiny_persona_dir, max_tokens=64,
                         validation_fraction=0)
    # [hi there, long] and [long, ok] (after trimming [hi there, long, ok]) cannot fit.
    assert [i["turns"] for i in all_instances(tmp_path / "out")] == [["hello", "hi"]]
    assert info.too_long == 2
    with pytest.raises(TrainingError, match="no training instance"):
        build_dataset(write_dialogue_jsonl(tmp_path / "e.jsonl", [["hi there", long_turn]]),
                      tmp_path / "out2", base_model=tiny_persona_dir, max_tokens=64)


def test_identical_instances_kept_once(tmp_path: Path, tiny_persona_dir: Path):
    src = write_dialogue_jsonl(tmp_path / "d.jsonl", [["hi", "hello"], ["hi", "hello", "yo"]])
    info = build_dataset(src, tmp_path / "out", base_model=tiny_persona_dir,
                         validation_fraction=0)
    assert [i["turns"] for i in all_instances(tmp_path / "out")] == [["hi", "hello"],
                                                                    ["hi", "hello", "yo"]]
    assert info.duplicates == 1


def many_conversations(n: int) -> list[list[str]]:
    return [[f"question number {i}", f"answer number {i}", f"thanks {i}"] for i in range(n)]


def test_no_thread_in_both_splits_over_many_seeds(tmp_path: Path, tiny_persona_dir: Path):
    src = write_dialogue_jsonl(tmp_path / "d.jsonl", many_conversations(20))
    for seed in range(12):
        out = tmp_path / f"out{seed}"
        info = build_dataset(src, out, base_model=tiny_persona_dir, seed=seed)
        train = {i["thread"] for i in read_jsonl(out / "train.jsonl")}
        validation = {i["thread"] for i in read_jsonl(out / "validation.jsonl")}
        assert not train & validation
        assert len(train | validation) == 20 and len(validation) == 2
        assert (info.train, info.validation) == (2 * 18, 2 * 2)
    for seed in range(500):  # the split alone, over many more seeds and sizes
        threads = [f"t{i}" for i in range(seed % 30 + 1)]
        held = split_threads(threads, 0.1, seed)
        assert held < set(threads) or (len(threads) == 1 and not held)
        assert len(held) == (0 if len(threads) < 2 else max(1, int(len(threads) * 0.1 + 0.5)))


def test_at_least_one_validation_thread_from_two(tmp_path: Path, tiny_persona_dir: Path):
    src = write_dialogue_jsonl(tmp_path / "d.jsonl", many_conversations(2))
    info = build_dataset(src, tmp_path / "out", base_model=tiny_persona_dir)
    assert (info.train_threads, info.validation_threads) == (1, 1)


def test_deterministic_for_a_seed(tmp_path: Path, tiny_persona_dir: Path):
    src = write_dialogue_jsonl(tmp_path / "d.jsonl", many_conversations(20))

    def files(seed: int, name: str) -> tuple[str, str]:
        build_dataset(src, tmp_path / name, base_model=tiny_persona_dir, seed=seed)
        return tuple((tmp_path / name / f).read_text() for f in ("train.jsonl",
                                                                 "validation.jsonl"))

    assert files(7, "a") == files(7, "b")
    assert len({files(seed, f"s{seed}") for seed in range(5)}) > 1  # the seed matters


def test_jsonl_and_csv_give_the_same_instances(tmp_path: Path, tiny_persona_dir: Path):
    jsonl = write_dialogue_jsonl(tmp_path / "d.jsonl", CONVERSATIONS)
    table = write_dialogue_csv(tmp_path / "d.csv", CONVERSATIONS)
    a = build_dataset(jsonl, tmp_path / "a", base_model=tiny_persona_dir, seed=3)
    b = build_dataset(table, tmp_path / "b", base_model=tiny_persona_dir, seed=3)

    assert a == b and a.source == "file"
    for name in ("train.jsonl", "validation.jsonl"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    turns = [i["turns"] for i in all_instances(tmp_path / "a")]
    assert ["do you like music, or movies more?", "movies mostly"] in turns  # one line a turn
    assert ["how are you", "fine", "and you", "good", "bye"] in turns
    assert len(turns) == 2 + 2 + 1 + 6


def test_filter_then_dataset_trains_only_on_good_text(tmp_path: Path, tiny_persona_dir: Path):
    from tests.test_filter import GOOD

    filter_threads(write_threads(tmp_path / "raw.jsonl", THREADS), tmp_path / "filtered")
    build_dataset(tmp_path / "filtered" / "threads.jsonl", tmp_path / "dataset",
                  base_model=tiny_persona_dir, max_tokens=1000)
    replies = {turn for i in all_instances(tmp_path / "dataset") for turn in i["turns"][1:]}
    good = {" ".join(text.split()) for text in GOOD.values()}
    assert replies == good | {"Check the lost and found at the station."}


@pytest.mark.parametrize(("name", "content", "message"), [
    ("d.jsonl", b"", "d.jsonl is empty"),
    ("d.jsonl", b"\n  \n", "d.jsonl is empty"),
    ("d.jsonl", b'["a", "b"]\n{"turns": []}\n', "line 2: the conversation has no turns"),
    ("d.jsonl", b'["only one"]\n', "line 1: the conversation has only one turn"),
    ("d.jsonl", b'["a", "b"]\n\n{broken\n', "line 3: not valid JSON"),
    ("d.jsonl", b'{"text": "a"}\n', 'line 1: expected a list of turns or an object with a "turns"'),
    ("d.jsonl", b'["a", 2]\n', "line 1: turn 2 is not text"),
    ("d.jsonl", b'["a", "  "]\n', "line 1: turn 2 is empty"),
    ("d.jsonl", b'["a", "b"]\n["caf\xe9", "x"]\n', "line 2: not UTF-8 text"),
    ("d.csv", b"", "d.csv is empty"),
    ("d.csv", b"id,message\n1,hi\n1,yo\n", "line 1: the header must name the columns "
                                           "conversation,text"),
    ("d.csv", b"conversation,text\n", "header but no conversations"),
    ("d.csv", b"conversation,text\na,hi\na,yo\nb,alone\n", "line 4: conversation 'b' has only "
                                                           "one turn"),
    ("d.csv", b"conversation,text\na,hi\na,caf\xe9\n", "line 3: not UTF-8 text"),
    ("d.csv", b"conversation,text\na,\n", "line 2: the text is empty"),
    ("d.csv", b"conversation,text\na,hi\na,yo,extra\n", "line 3: 3 columns, expected 2"),
    ("d.csv", b'conversation,text\na,"two\nlines"\n,yo\n', "line 4: no conversation id"),
    ("d.txt", b"hello\n", "unknown kind of file"),
])
def test_bad_dialogue_files(tmp_path: Path, tiny_persona_dir: Path, name: str, content: bytes,
                            message: str):
    src = tmp_path / name
    src.write_bytes(content)
    with pytest.raises(TrainingError, match=message):
        build_dataset(src, tmp_path / "out", base_model=tiny_persona_dir)
    assert not (tmp_path / "out").exists()


def test_bad_options_and_missing_tokenizer(tmp_path: Path):
    src = write_dialogue_jsonl(tmp_path / "d.jsonl", CONVERSATIONS)
    for kwargs in ({"min_turns": 1}, {"max_turns": 1}, {"max_tokens": 0},
                   {"validation_fraction": 1.0}):
        with pytest.raises(ConfigError):
            build_dataset(src, tmp_path / "out", base_model="x", **kwargs)
    with pytest.raises(TrainingError, match="Could not load the tokenizer"):
        build_dataset(src, tmp_path / "out", base_model=tmp_path / "no-such-model")


def test_damaged_filtered_threads_name_the_line(tmp_path: Path, tiny_persona_dir: Path):
    src = tmp_path / "threads.jsonl"
    src.write_text(json.dumps(TREE) + "\n" + json.dumps({**TREE, "comments": [{"id": "x"}]}),
                   encoding="utf-8")
    with pytest.raises(TrainingError, match="line 2: comment 1 has no 'parent_id'"):
        build_dataset(src, tmp_path / "out", base_model=tiny_persona_dir)
