"""Crash safety, in figures: kill -9 the CLI at random moments and check what survived.

Three parts, each against the real ``talk-to-transformers`` process (``python -m engine``):

* **chat**: a scripted conversation, continued across runs (``chat --continue -m ... -m ...``),
  each run killed with SIGKILL at a random moment after its first output. Its stdout is read
  unbuffered (``PYTHONUNBUFFERED=1``), so what was read is exactly what reached the terminal.
  Afterwards every turn that was shown (``you> TEXT`` lines, and the ``bot> `` text streamed so
  far) must be in the conversation store, the store must open cleanly (SQLite integrity check
  ``ok``), and replies left ``streaming`` by the dead process must read ``cut``.
* **voice save**: ``voices add NAME --file WAV`` killed at a random moment: ``voices list`` then
  shows either the complete voice or nothing (never a damaged one), and a rerun succeeds.
* **model pull**: ``models pull dialogpt-small`` from a local, slow fake Hub, killed at a random
  moment: ``models list`` then shows the persona ready or not at all, and a rerun succeeds.

Training killed mid-run resuming from its last checkpoint is covered by tests/test_train.py.

Usage: ``python scripts/crash_test.py [--kills 50] [--voice-kills 5] [--pull-kills 5] [--seed 0]``
(exit status 1 if anything shown was lost or a store did not open cleanly).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DB_NAME = "conversations.sqlite3"
MESSAGES_PER_RUN = 3
# Greedy, so the tiny model writes exactly this many word pieces per reply (about 2 s on a busy
# 2-core CPU): long enough that many kills land mid-reply, short enough that runs end.
REPLY_TOKENS = 60
HUB_REPO = "microsoft/DialoGPT-small"  # what the catalogue's dialogpt-small pulls
HUB_PIECE = 64 * 1024  # the slow fake Hub sends big files in pieces of this many bytes...
HUB_PAUSE_S = 0.04  # ...with this pause after each, so a pull takes a couple of seconds


# -- one killed process ---------------------------------------------------------------------------


@dataclass
class Run:
    """What one process printed before it ended, and whether we killed it."""

    stdout: str
    stderr: str
    killed: bool
    returncode: int
    first_output_s: float | None  # seconds from start to its first stdout byte
    ended_s: float | None = None  # seconds from start to its exit


def cli_env(data: Path, **extra: str) -> dict[str, str]:
    """Environment for a CLI process on the data folder ``data``, offline unless ``extra`` says."""
    env = {**os.environ, "TTT_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "TRANSFORMERS_VERBOSITY": "error"}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None and v != "<unset>"}


def run_cli(args: list[str], env: dict[str, str], kill_after: float | None = None,
            timeout: float = 300, *, from_start: bool = False) -> Run:
    """Run the CLI; with ``kill_after``, SIGKILL it that many seconds after its first output.

    With ``from_start``, the delay counts from the start instead (for commands that print
    only when they are done).

    stdout is read straight from the pipe as it comes (the child writes unbuffered), and drained
    to the end after the kill, so ``Run.stdout`` is everything that reached the terminal.
    """
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out: list[bytes] = []
    err: list[bytes] = []
    first = threading.Event()
    first_at: list[float] = []

    def read_out() -> None:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            if not first.is_set():
                first_at.append(time.monotonic() - started)
                first.set()
            out.append(chunk)
        first.set()  # EOF without output: nothing to wait for

    def read_err() -> None:
        while chunk := os.read(proc.stderr.fileno(), 65536):
            err.append(chunk)

    readers = [threading.Thread(target=read_out, daemon=True),
               threading.Thread(target=read_err, daemon=True)]
    for reader in readers:
        reader.start()
    killed = False
    try:
        if kill_after is not None:
            if from_start:
                kill_after = max(0.0, kill_after - (time.monotonic() - started))
            else:
                first.wait(timeout)
            try:
                proc.wait(kill_after)
            except subprocess.TimeoutExpired:
                proc.kill()  # SIGKILL: no handler, no flush, no atexit
                killed = True
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for reader in readers:
            reader.join(10)
        proc.stdout.close()
        proc.stderr.close()
    return Run(b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace"),
               killed, proc.returncode, first_at[0] if first_at else None,
               time.monotonic() - started)


# -- chat ---------------------------------------------------------------------------------------


@dataclass
class ChatCounts:
    """Figures of the chat part."""

    kills: int = 0
    mid_reply: int = 0  # kills that landed while a reply was streaming on screen
    turns_shown: int = 0
    turns_recovered: int = 0
    streaming_left: int = 0  # replies the dead process left 'streaming'
    cut_on_open: int = 0  # ...of those, read back as 'cut' after the store was opened
    opened_cleanly: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        """Shown turns missing (or different) in the store."""
        return self.turns_shown - self.turns_recovered


_MARK = re.compile(r"(?m)^(you> |bot> )")


def shown_turns(stdout: str) -> list[tuple[str, str]]:
    """(role, text) of each turn on screen; a reply is the text streamed after ``bot> ``."""
    parts = _MARK.split(stdout)
    turns = []
    for mark, text in zip(parts[1::2], parts[2::2], strict=True):
        if mark == "you> ":
            turns.append(("user", text.split("\n", 1)[0]))
        else:
            turns.append(("assistant", text.split("\n", 1)[0]))
    return turns


def build_chat_persona(folder: Path) -> Path:
    """The tiny DialoGPT fixture, greedy, replies of REPLY_TOKENS pieces."""
    from tests.tiny_models import build_tiny_dialogpt

    return build_tiny_dialogpt(folder, n_positions=512, decoding={
        "do_sample": False, "max_new_tokens": REPLY_TOKENS, "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0})


def _raw_counts(db: Path) -> tuple[int, int]:
    """(highest turn id, replies left 'streaming'), read without the app's recovery on open."""
    if not db.exists():
        return 0, 0
    con = sqlite3.connect(db)
    try:
        top = con.execute("SELECT COALESCE(MAX(id), 0) FROM turns").fetchone()[0]
        streaming = con.execute("SELECT COUNT(*) FROM turns WHERE status='streaming'").fetchone()
        return int(top), int(streaming[0])
    except sqlite3.OperationalError:  # killed before the schema was written
        return 0, 0
    finally:
        con.close()


def _open_store(db: Path, counts: ChatCounts):
    """Open the store as the app does; count it clean if it opens, checks ``ok`` and no streams."""
    from engine.errors import StoreError
    from engine.store import ConversationStore

    if not db.exists():
        counts.opened_cleanly += 1  # killed before it was created: the next run makes it
        return None
    try:
        store = ConversationStore(db)
    except StoreError as err:
        counts.problems.append(f"store did not open: {err.message}")
        return None
    check = store._db.execute("PRAGMA integrity_check").fetchone()[0]
    streaming = store._db.execute("SELECT COUNT(*) FROM turns WHERE status='streaming'")
    left = streaming.fetchone()[0]
    if check == "ok" and left == 0:
        counts.opened_cleanly += 1
    else:
        counts.problems.append(f"store after open: integrity {check!r}, {left} still streaming")
    return store


def _check_run(run: Run, store, after_id: int, counts: ChatCounts, label: str) -> None:
    """Every shown turn of ``run`` is among the store's turns newer than ``after_id``."""
    rows = [] if store is None else store._db.execute(
        "SELECT role, text, status FROM turns WHERE id > ? ORDER BY id", (after_id,)).fetchall()
    pos = 0
    for role, text in shown_turns(run.stdout):
        if role == "assistant" and not text.strip():
            continue  # "bot> " with nothing streamed yet shows no turn
        counts.turns_shown += 1
        shown = text.rstrip()
        # A reply is stored growing, before each piece is shown: it starts with what was shown.
        while pos < len(rows) and not (rows[pos][0] == role and (
                rows[pos][1] == shown if role == "user" else rows[pos][1].startswith(shown))):
            pos += 1
        if pos < len(rows):
            counts.turns_recovered += 1
            pos += 1
        else:
            counts.problems.append(f"{label}: shown {role} turn {shown[:60]!r} not in the store")


def chat_kills(n: int, rng: random.Random, work: Path, *, log=print) -> ChatCounts:
    """Kill ``n`` chat runs of one scripted conversation; check the store after each kill."""
    persona = build_chat_persona(work / "persona")
    data = work / "chat-data"
    db = data / DB_NAME
    counts = ChatCounts()
    message = 0

    def args(resume: bool) -> list[str]:
        nonlocal message
        argv = ["chat", "-p", str(persona), *(["--continue"] if resume else [])]
        for _ in range(MESSAGES_PER_RUN):
            message += 1
            argv += ["-m", f"scripted message {message}"]
        return argv

    # One run to the end times the phases: the kill moments are drawn from its span.
    ready, end = _phase_times(data, args)
    log(f"chat: a full run takes {end:.1f} s after its first output; the model is ready at "
        f"{ready:.1f} s")
    attempts = 0
    while counts.kills < n and attempts < 3 * n:
        attempts += 1
        # One kill in five lands while the model loads (store opened, nothing shown yet), the
        # rest anywhere from then to (nearly) the end of the run, where turns are being shown.
        delay = rng.uniform(0, ready) if rng.random() < 0.2 else rng.uniform(ready, end * 0.95)
        before, _ = _raw_counts(db)
        run = run_cli(args(True), cli_env(data), kill_after=delay)
        if run.returncode not in (0, -9):
            counts.problems.append(f"a chat run failed (rc {run.returncode}): {run.stderr[-500:]}")
        if not run.killed:
            # It finished before its kill moment (the calibration ran on a busier machine):
            # shrink the window to this run's length and draw again.
            if run.first_output_s is not None and run.ended_s is not None:
                length = run.ended_s - run.first_output_s
                ready, end = min(ready, length * ready / end), min(end, length)
            continue
        counts.kills += 1
        i = counts.kills - 1
        last = shown_turns(run.stdout)[-1:] or [("", "")]
        mid_reply = (last[0][0] == "assistant" and bool(last[0][1].strip())
                     and not run.stdout.endswith("\n"))
        counts.mid_reply += mid_reply
        _, streaming = _raw_counts(db)
        counts.streaming_left += streaming
        store = _open_store(db, counts)
        try:
            if streaming and store is not None:
                counts.cut_on_open += streaming - store._db.execute(
                    "SELECT COUNT(*) FROM turns WHERE status='streaming'").fetchone()[0]
            _check_run(run, store, before, counts, f"kill {i + 1}")
        finally:
            if store is not None:
                store.close()
        log(f"  kill {i + 1:>3}/{n} at {delay:5.1f} s: {len(shown_turns(run.stdout)):>2} turns "
            f"on screen{' (mid-reply)' if mid_reply else ''}")
    if counts.kills < n:
        counts.problems.append(f"only {counts.kills} of {n} chat runs were killed in time")
    return counts


def _phase_times(data: Path, args) -> tuple[float, float]:
    """(seconds to 'Ready', seconds to exit), both from the first output, of a full run."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "engine", *args(True)], cwd=ROOT,
                            env=cli_env(data), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    first = ready = None
    for line in proc.stdout:
        now = time.monotonic() - started
        first = now if first is None else first
        if line.startswith("Ready in") and ready is None:
            ready = now
    if proc.wait() != 0:
        raise SystemExit("chat does not run: try the command by hand")
    end = time.monotonic() - started
    first = first or 0.0
    return (ready or end) - first, end - first


# -- voice save and model pull ---------------------------------------------------------------------


@dataclass
class SaveCounts:
    """Figures of a kill-during-save part (voices or a pull)."""

    what: str
    runs: int = 0
    kills: int = 0  # runs killed (the others had finished before their kill moment)
    finished_before_kill: int = 0  # the save was complete when the kill came (or it ended)
    half_written_listed: int = 0  # must stay 0
    reruns_ok: int = 0
    leftover_temporaries: int = 0  # hidden temporaries a killed save left after the next start
    problems: list[str] = field(default_factory=list)


def speech_wav(folder: Path) -> Path:
    """Eleven seconds of espeak-ng speech, one speaker, as a 16 kHz WAV (needs espeak-ng, sox)."""
    import numpy as np
    import soundfile as sf

    from tests.speech import SENTENCES, speak

    parts = [sf.read(str(speak(s, folder, pitch=20)), dtype="float32")[0] for s in SENTENCES]
    path = folder / "sample.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path


def voice_save_kills(n: int, rng: random.Random, work: Path, *, log=print) -> SaveCounts:
    """Kill ``voices add`` ``n`` times; after each, ``voices list`` and a rerun."""
    wav = speech_wav(work / "speech")
    data = work / "voice-data"
    counts = SaveCounts("voice save")
    started = time.monotonic()
    full = run_cli(["voices", "add", "Calibration", "--consent", "Tester",
                    "--file", str(wav)], cli_env(data))
    if full.returncode != 0:
        raise SystemExit(f"voices add does not run: {full.stderr}")
    end = time.monotonic() - started
    log(f"voice save: a full `voices add` takes {end:.1f} s")
    for i in range(n):
        name = f"Voice {i}"
        # `voices add` prints only when it is done: the moment counts from its start.
        run = run_cli(["voices", "add", name, "--consent", "Tester",
                       "--file", str(wav)], cli_env(data),
                      kill_after=rng.uniform(0, end), from_start=True)
        counts.runs += 1
        counts.kills += run.killed
        listed = run_cli(["voices", "list"], cli_env(data))
        damaged = [line for line in listed.stdout.splitlines() if "(damaged)" in line]
        present = any(line.split()[:2] == name.split() for line in listed.stdout.splitlines())
        if damaged or listed.returncode != 0:
            counts.half_written_listed += 1
            counts.problems.append(f"voice kill {i + 1}: {damaged or listed.stderr}")
        if present:
            counts.finished_before_kill += 1
            _check_voice_complete(data / "voices" / f"voice-{i}", counts)
            counts.reruns_ok += 1  # nothing to redo
        else:
            rerun = run_cli(["voices", "add", name, "--consent", "Tester",
                             "--file", str(wav)], cli_env(data))
            if rerun.returncode == 0 and "Enrolled the voice" in rerun.stdout:
                counts.reruns_ok += 1
            else:
                counts.problems.append(f"voice kill {i + 1}: rerun failed: {rerun.stderr}")
        counts.leftover_temporaries = sum(1 for p in (data / "voices").iterdir()
                                          if p.name.startswith("."))
        log(f"  voice kill {i + 1}/{n}: {'saved before the kill' if present else 'not saved'}; "
            f"rerun ok {counts.reruns_ok}/{i + 1}")
    return counts


def _check_voice_complete(folder: Path, counts: SaveCounts) -> None:
    for name in ("voice.json", "sample.wav", "embedding.npy"):
        if not (folder / name).is_file():
            counts.half_written_listed += 1
            counts.problems.append(f"{folder.name} is listed but lacks {name}")


def pull_kills(n: int, rng: random.Random, work: Path, *, log=print) -> SaveCounts:
    """Kill ``models pull dialogpt-small`` (from a slow local fake Hub) ``n`` times."""
    from tests.tiny_models import build_tiny_dialogpt

    repo = work / "hub-repo"
    if not repo.exists():
        build_tiny_dialogpt(repo)
        (repo / "persona.json").unlink()
        # A big file that comes slowly, so a kill can land mid-download.
        (repo / "vocab-extra.txt").write_bytes(os.urandom(2 * 1024 * 1024))
    counts = SaveCounts("model pull")
    with SlowHub(HUB_REPO, repo) as hub:
        def env(i: int) -> dict[str, str]:
            return cli_env(work / f"pull-{i}" / "data", HF_HUB_OFFLINE="<unset>",
                           HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(work / f"pull-{i}" / "hf"))

        started = time.monotonic()
        full = run_cli(["models", "pull", "dialogpt-small"], env(-1))
        if full.returncode != 0:
            raise SystemExit(f"models pull does not run: {full.stderr}")
        end = time.monotonic() - started
        log(f"model pull: a full pull takes {end:.1f} s")
        for i in range(n):
            run = run_cli(["models", "pull", "dialogpt-small"], env(i),
                          kill_after=rng.uniform(0, end), from_start=True)
            counts.runs += 1
            counts.kills += run.killed
            listed = run_cli(["models", "list"], env(i))
            installed = listed.stdout.split("\nCatalogue:")[0]
            rows = [line for line in installed.splitlines() if "dialogpt-small" in line]
            if "(broken)" in installed or any(not line.rstrip().endswith("ready")
                                              for line in rows):
                counts.half_written_listed += 1
                counts.problems.append(f"pull kill {i + 1}: listed half-written: {installed}")
            if rows:
                counts.finished_before_kill += 1
                counts.reruns_ok += 1
            else:
                rerun = run_cli(["models", "pull", "dialogpt-small"], env(i))
                chat = run_cli(["chat", "-p", "dialogpt-small", "-m", "hi"], env(i))
                if rerun.returncode == 0 and chat.returncode == 0 and "bot> " in chat.stdout:
                    counts.reruns_ok += 1
                else:
                    counts.problems.append(f"pull kill {i + 1}: rerun failed: "
                                           f"{rerun.stderr}{chat.stderr}")
            personas = work / f"pull-{i}" / "data" / "personas"
            counts.leftover_temporaries += sum(1 for p in personas.glob(".*"))
            log(f"  pull kill {i + 1}/{n}: {'finished before the kill' if rows else 'not saved'};"
                f" rerun ok {counts.reruns_ok}/{i + 1}")
            shutil.rmtree(work / f"pull-{i}", ignore_errors=True)
    return counts


def _slow_hub_class():
    from tests.fake_hub import FakeHub, _Handler

    class SlowHandler(_Handler):
        def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
            if not body or len(data) <= HUB_PIECE:
                super()._send(status, data, headers, body)
                return
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            try:
                for start in range(0, len(data), HUB_PIECE):
                    self.wfile.write(data[start:start + HUB_PIECE])
                    time.sleep(HUB_PAUSE_S)
            except ConnectionError:
                pass  # the killed client hung up: the point of the exercise

    class Slow(FakeHub):
        def __init__(self, repo_id: str, folder: Path):
            super().__init__(repo_id, folder)
            self.RequestHandlerClass = SlowHandler

    return Slow


def SlowHub(repo_id: str, folder: Path):  # noqa: N802 - used like the class it returns
    """A FakeHub (tests/fake_hub.py) that sends files over 64 kB slowly."""
    return _slow_hub_class()(repo_id, folder)


# -- the summary -----------------------------------------------------------------------------------


def summary(chat: ChatCounts | None, saves: list[SaveCounts]) -> str:
    """The figures, as printed at the end."""
    lines = ["", "Crash safety (kill -9 at random moments)"]
    if chat is not None:
        lines += [
            f"  chat kills:                {chat.kills} ({chat.mid_reply} mid-reply)",
            f"  turns shown:               {chat.turns_shown}",
            f"  turns recovered:           {chat.turns_recovered}",
            f"  mismatches:                {chat.mismatches}",
            f"  replies left streaming:    {chat.streaming_left} (read back as cut: "
            f"{chat.cut_on_open})",
            f"  store opened cleanly:      {chat.opened_cleanly}/{chat.kills}",
        ]
    for save in saves:
        lines += [
            f"  {save.what} kills:{'':<{15 - len(save.what)}}{save.kills} of {save.runs} runs "
            f"({save.finished_before_kill} complete when killed)",
            f"    half-written listed:     {save.half_written_listed}",
            f"    reruns succeeded:        {save.reruns_ok}/{save.runs}",
            f"    hidden temporaries left after the next start: {save.leftover_temporaries}",
        ]
    lines.append("  training killed -> resumes from its last checkpoint: covered by "
                 "tests/test_train.py")
    problems = (chat.problems if chat else []) + [p for s in saves for p in s.problems]
    lines += [f"  PROBLEM: {p}" for p in problems]
    lines.append("  result: " + ("FAIL" if problems else "PASS"))
    return "\n".join(lines)


def _quiet() -> None:
    """No progress bars from building the fixtures."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """Run the kills and print the figures; 1 if anything shown was lost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="chat kills (default 50)")
    parser.add_argument("--voice-kills", type=int, default=5, help="kills during `voices add`")
    parser.add_argument("--pull-kills", type=int, default=5, help="kills during `models pull`")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the kill moments")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    _quiet()
    work = Path(tempfile.mkdtemp(prefix="ttt-crash-"))
    try:
        chat = chat_kills(args.kills, rng, work) if args.kills else None
        saves = []
        if args.voice_kills:
            if shutil.which("espeak-ng") and shutil.which("sox"):
                saves.append(voice_save_kills(args.voice_kills, rng, work))
            else:
                print("voice save: skipped (needs espeak-ng and sox for a real WAV)")
        if args.pull_kills:
            saves.append(pull_kills(args.pull_kills, rng, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(summary(chat, saves))
    if args.json:
        figures = {"chat": None if chat is None else {**chat.__dict__,
                                                      "mismatches": chat.mismatches},
                   "saves": [s.__dict__ for s in saves]}
        Path(args.json).write_text(json.dumps(figures, indent=2))
    failed = (chat is not None and chat.problems) or any(s.problems for s in saves)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
