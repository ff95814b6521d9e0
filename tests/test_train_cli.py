"""``talk-to-transformers train all``: a persona from a (fake) subreddit and from a dialogue file.

Then chatted with — the installed command line, as a person runs it, in subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_reddit import FakeReddit

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = Path(sys.executable).parent / "talk-to-transformers"
SECRET = "test-client-secret"


def run(*args: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    command = [str(LAUNCHER)] if LAUNCHER.exists() else [sys.executable, "-m", "app.cli"]
    return subprocess.run([*command, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "TTT_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1",
            "REDDIT_CLIENT_ID": "test-client-id", "REDDIT_CLIENT_SECRET": SECRET,
            "REDDIT_USER_AGENT": "talk-to-transformers tests"}


TRAIN_FLAGS = ["--method", "full", "--epochs", "2", "--batch-size", "4", "--max-steps", "6",
               "--save-every", "3", "--device", "cpu", "--max-tokens", "128"]


def test_train_all_from_a_subreddit_then_chat(env, tiny_persona_dir, tmp_path):
    with FakeReddit() as reddit:
        env["TTT_REDDIT_URL"] = reddit.url
        done = run("train", "all", "--subreddit", "berkeley", "--base", str(tiny_persona_dir),
                   "--name", "Berkeley Test", *TRAIN_FLAGS, "--progress-json", env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    finished = [(d["stage"], d.get("status")) for d in lines if d["event"] == "done"]
    assert [s for s, _ in finished] == ["scrape", "filter", "dataset", "train", "evaluate",
                                        "export"]
    assert any(d["stage"] == "train" and d["event"] == "progress" and "loss" in d
               for d in lines)
    report = next(d["report"] for d in lines if d["stage"] == "filter" and d["event"] == "done")
    assert report["kept_comments"] > 0 and sum(report["rules"].values()) > 0
    persona = next(d["persona"] for d in lines if d["stage"] == "export" and d["event"] == "done")
    assert persona == "berkeley-test"
    run_dir = Path(env["TTT_DATA_DIR"]) / "training" / "berkeley-test"
    assert (run_dir / "eval.json").is_file() and (run_dir / "checkpoints" / "latest").is_file()
    card = json.loads((Path(env["TTT_DATA_DIR"]) / "personas" / persona / "persona.json")
                      .read_text())["training_card"]
    assert card  # what it was trained on and how, beside the weights
    assert SECRET not in done.stdout + done.stderr

    listed = run("models", "list", env=env)
    assert "berkeley-test" in listed.stdout
    chat = run("chat", "-p", persona, "-m", "Where should I study?", env=env)
    assert chat.returncode == 0, chat.stderr
    assert "bot> " in chat.stdout

    with FakeReddit() as reddit:  # the same command again: it resumes, nothing is redone
        env["TTT_REDDIT_URL"] = reddit.url
        again = run("train", "all", "--subreddit", "berkeley", "--base",
                    str(tiny_persona_dir), "--name", "Berkeley Test", *TRAIN_FLAGS, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    # The dataset training started on is kept (no re-listing, no reshuffled split), the
    # finished training is not redone, and the existing persona is not overwritten.
    assert "[scrape] kept: training has started on this dataset" in again.stdout
    assert "[train] already trained with these settings" in again.stdout
    assert "a persona 'Berkeley Test' exists already; nothing was exported" in again.stdout
    assert reddit.count("GET /r/") == 0

    replaced = run("train", "all", "--subreddit", "berkeley", "--base", str(tiny_persona_dir),
                   "--name", "Berkeley Test", *TRAIN_FLAGS, "--replace", env=env)
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert "[export] persona 'berkeley-test' is ready" in replaced.stdout
    other = run("train", "scrape", "--subreddit", "askscience", "--run", "berkeley-test",
                env=env)
    assert other.returncode == 1 and "holds threads of r/berkeley" in other.stderr


def test_train_all_from_a_dialogue_file(env, tiny_persona_dir, tmp_path):
    dialogues = tmp_path / "grandpa.jsonl"
    turns = [["How was your day?", "Busy, I fixed the fence.", "Did it take long?",
              "All morning, but it stands straight now."],
             ["Do you want tea?", "Yes please, with honey.", "Coming right up."],
             ["What are you reading?", "An old sailing book.", "Is it good?",
              "The storms are the best part."]] * 4
    dialogues.write_text("\n".join(json.dumps({"id": str(i), "turns": t})
                                   for i, t in enumerate(turns)) + "\n")
    nobody = run("train", "all", "--dialogues", str(dialogues), "--base", str(tiny_persona_dir),
                 "--name", "Grandpa", "--voice", "Nobody", *TRAIN_FLAGS, env=env)
    assert nobody.returncode == 1 and "No voice called 'Nobody'" in nobody.stderr
    assert not (tmp_path / "data" / "training").exists()  # refused before anything ran
    done = run("train", "all", "--dialogues", str(dialogues), "--base", str(tiny_persona_dir),
               "--name", "Grandpa", "--voice", "builtin:marius", *TRAIN_FLAGS, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[export] persona 'grandpa' is ready" in done.stdout
    persona = json.loads((tmp_path / "data" / "personas" / "grandpa" / "persona.json")
                         .read_text())
    assert persona["default_voice"] == "builtin:marius"  # it speaks in that voice
    chat = run("chat", "-p", "grandpa", "-m", "How was your day?", env=env)
    assert chat.returncode == 0 and "bot> " in chat.stdout, chat.stderr


def test_train_errors_are_messages_not_tracebacks(env, tmp_path, tiny_persona_dir):
    missing = run("train", "filter", "--run", "nothing-here", env=env)
    assert missing.returncode == 1
    assert "Nothing to filter" in missing.stderr and "Traceback" not in missing.stderr
    no_creds = {k: v for k, v in env.items() if not k.startswith("REDDIT_")}
    creds = run("train", "scrape", "--subreddit", "berkeley", env=no_creds)
    assert creds.returncode == 1 and "Traceback" not in creds.stderr
    assert "REDDIT_CLIENT_ID" in creds.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\nme,hi\n")
    wrong = run("train", "dataset", "--dialogues", str(bad), "--run", "x", env=env)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    too_long = run("train", "dataset", "--dialogues", str(bad), "--run", "x", "--base",
                   str(tiny_persona_dir), "--max-tokens", "4096", env=env)
    assert too_long.returncode == 1 and "context of 128 tokens" in too_long.stderr
    usage = run("train", "all", env=env)
    assert usage.returncode == 2 and "--subreddit" in usage.stderr


def test_the_berkeley_recipe_fills_in_the_original_settings():
    from training.cli import _apply_recipe, build_parser

    parser = build_parser()
    args = parser.parse_args(["all", "--recipe", "berkeley"])
    _apply_recipe(args, parser)
    assert (args.subreddit, args.base, args.name) == ("berkeley", "microsoft/DialoGPT-medium",
                                                      "Berkeley")
    mine = parser.parse_args(["all", "--recipe", "berkeley", "--base", "starter"])
    _apply_recipe(mine, parser)
    assert mine.base == "starter"  # a flag given on the command line wins over the recipe
