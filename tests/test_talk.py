"""End to end: ``talk`` with the real fixture models, through the virtual sound card."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import ConversationStore
from tests.speech import SENTENCES, speak, word_error_rate

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.audio
def test_talk_push_to_talk_then_typed(pulse, tmp_path, tiny_persona_dir, quick_pocket_config):
    tts = quick_pocket_config  # the tiny pocket-tts model, as pulled into a Hub cache
    wav = speak(SENTENCES[1], tmp_path, rate=48000, channels=2)
    data = tmp_path / "data"
    env = {**os.environ, "TTT_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "talk", "-p", str(tiny_persona_dir), "--tts-model",
         str(tts)], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    out = ""
    try:
        out += _read_until(proc, "talk> ")
        proc.stdin.write("\n")  # press: start talking
        proc.stdin.flush()
        out += _read_until(proc, "listening...")
        pulse.play(wav).wait(timeout=30)
        time.sleep(0.3)
        proc.stdin.write("\n")  # release
        proc.stdin.flush()
        out += _read_until(proc, "  [asr")
        out += _read_until(proc, "talk> ")
        proc.stdin.write("and a typed message\n")
        proc.stdin.flush()
        out += _read_until(proc, "  [first token")
        proc.stdin.close()  # Ctrl-D
        out += proc.stdout.read()
        proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    assert proc.returncode == 0, err
    heard = out.split("you> ", 1)[1].splitlines()[0]
    print("heard:", heard)
    assert word_error_rate(SENTENCES[1], heard) <= 0.35
    assert "Replies are spoken in the default built-in voice (alba)" in out
    store = ConversationStore(data / "conversations.sqlite3")
    turns = store.turns(store.latest_conversation())
    store.close()
    assert [t.role for t in turns] == ["user", "assistant"] * 2
    assert turns[2].text == "and a typed message"
    spoken = turns[1].meta["timings"]
    assert {"asr", "first_token", "first_audio", "total"} <= set(spoken)


def _read_until(proc: subprocess.Popen, marker: str, timeout: float = 120) -> str:
    """Read stdout character by character until ``marker`` (prompts have no newline)."""
    got = ""
    deadline = time.monotonic() + timeout
    while marker not in got:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"never saw {marker!r}; got {got!r}; "
                                 f"stderr {proc.stderr.read() if proc.poll() is not None else ''}")
        char = proc.stdout.read(1)
        if not char:
            continue
        got += char
    return got
