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


EVERY_EVENT = [
    dict(stage="scrape", event="start", text="r/berkeley: top posts (all), up to 5 threads"),
    dict(stage="scrape", event="progress", done=3, total=5, title="Where to study?"),
    dict(stage="train", event="progress", step=12, total_steps=96, loss=3.21, tokens_per_s=812.5,
         eta_s=95.0, epoch=0.25, lr=5e-05),
    dict(stage="evaluate", event="progress", phase="score", model="base", done=1, total=4,
         title="scoring (base)"),
    dict(stage="filter", event="done", text="kept 9 comments",
         report={"kept_comments": 9, "rules": {"deleted": 1}}),
    dict(stage="train", event="done", text="stopped at step 4/96", status="cancelled", step=4),
    dict(stage="evaluate", event="done", text="perplexity 40.1 → 12.3",
         figures={"perplexity": {"base": 40.1, "finetuned": 12.3}}),
    dict(stage="export", event="done", text="persona 'grandpa' is ready", persona="grandpa"),
    dict(stage="export", event="skip", status="exists", text="a persona 'Grandpa' exists"),
    dict(stage="all", event="note", text="stopped; run the same command again to continue"),
    dict(stage="", event="error", code="internal_error", message="Training stopped.",
         hint="Run it again."),
]


def test_every_progress_message_survives_its_json_line():
    from training.messages import EVENTS, ProgressMessage

    assert {d["event"] for d in EVERY_EVENT} == set(EVENTS)
    for wire in EVERY_EVENT:
        message = ProgressMessage.of(**wire)
        line = message.to_json()
        assert "\n" not in line and json.loads(line) == wire  # the protocol's flat object
        assert ProgressMessage.from_json(line) == message
    train = ProgressMessage.of(**EVERY_EVENT[2])
    assert (train.step, train.total_steps, train.loss, train.eta_s) == (12, 96, 3.21, 95.0)
    assert dict(train.data) == {"epoch": 0.25, "lr": 5e-05}  # the rest travels as it came


def test_the_reporter_writes_messages_for_programs_and_lines_for_people():
    import io

    from training.messages import ProgressMessage
    from training.reporter import Reporter

    out = io.StringIO()
    report = Reporter(True, out)
    report.emit("train", "start", text="full fine-tune")
    report.progress("scrape")(2, 5, "A thread")
    report.progress("train")({"step": 1, "total_steps": 6, "loss": 4.0, "eta_s": 65})
    read = [ProgressMessage.from_json(line) for line in out.getvalue().splitlines()]
    assert [(m.stage, m.event) for m in read] == [("train", "start"), ("scrape", "progress"),
                                                  ("train", "progress")]
    assert (read[1].done, read[1].total, read[1].title) == (2, 5, "A thread")
    people = io.StringIO()
    report = Reporter(False, people)
    report.emit("train", "start", text="full fine-tune")
    report.progress("train")({"step": 6, "total_steps": 6, "loss": 4.0, "eta_s": 65})
    report.emit("train", "done", text="6 steps")
    assert people.getvalue() == ("[train] full fine-tune\n\r  step 6/6 · loss 4.000 · ETA "
                                 "1m05s\033[K\n[train] 6 steps\n")


@pytest.mark.parametrize(("line", "says"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"event": "done"}', "needs a text 'stage'"),
    ('{"stage": "train", "event": "finished"}', "Unknown progress event 'finished'"),
    ('{"stage": "train", "event": "progress", "step": "twelve"}', "'step' has a wrong value"),
    ('{"stage": "train", "event": "progress", "loss": true}', "'loss' has a wrong value"),
    ('{"stage": "evaluate", "event": "done", "figures": [1]}', "'figures' has a wrong value"),
])
def test_a_malformed_progress_line_is_rejected_with_a_clear_error(line, says):
    from training.messages import ProgressLineError, ProgressMessage

    with pytest.raises(ProgressLineError, match="progress message|progress event|progress "
                       "field") as caught:
        ProgressMessage.from_json(line)
    assert says in caught.value.message and caught.value.code == "progress_line_invalid"
