"""All-or-nothing writes, and the clean-up of what a killed process left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.fsutil import _HOST, atomic_folder, atomic_write_text, sweep_leftovers


def _kill_mid_write(target: Path, what: str) -> None:
    """A child process starts an atomic write of ``target`` and is SIGKILLed inside it."""
    body = {
        "folder": "with atomic_folder(target) as tmp:\n"
                  "    (tmp / 'weights.bin').write_bytes(b'x' * 1000)\n"
                  "    os.kill(os.getpid(), signal.SIGKILL)",
        "file": "with open_atomic(target) as out:\n"
                "    out.write('half')\n    out.flush()\n"
                "    os.kill(os.getpid(), signal.SIGKILL)",
    }[what]
    script = textwrap.dedent("""
        import os, signal, sys
        from pathlib import Path
        from engine.fsutil import atomic_folder, open_atomic
        target = Path(sys.argv[1])
    """) + body
    done = subprocess.run([sys.executable, "-c", script, str(target)],
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == -9


def test_a_killed_write_leaves_only_a_hidden_temporary_which_the_next_start_removes(tmp_path):
    root = tmp_path / "data"
    _kill_mid_write(root / "voices" / "grandma", "folder")
    _kill_mid_write(root / "settings.json", "file")
    left = sorted(p.name for p in root.rglob(".*"))
    assert len(left) == 2 and all(name.startswith((".grandma-", ".settings.json-"))
                                  for name in left), left
    assert not (root / "voices" / "grandma").exists() and not (root / "settings.json").exists()

    removed = sweep_leftovers(root)

    assert sorted(p.name for p in removed) == left
    assert not list(root.rglob(".*"))
    assert (root / "voices").is_dir()  # only the temporaries go


def test_a_write_in_progress_in_a_live_process_is_left_alone(tmp_path):
    root = tmp_path / "data"
    with atomic_folder(root / "personas" / "big-model") as tmp:
        (tmp / "model.safetensors").write_bytes(b"partial")
        assert sweep_leftovers(root) == []  # our own process: still writing
        assert tmp.is_dir()
    assert (root / "personas" / "big-model" / "model.safetensors").is_file()


def test_other_hidden_files_and_user_files_are_never_touched(tmp_path):
    root = tmp_path / "data"
    keep = [root / ".settings.json.bak", root / "voices" / ".git", root / "notes-123-abc.tmp",
            root / "personas" / ".step-000010.tmp",
            # another machine's or container's (its process ids mean nothing here)
            root / "personas" / ".big-0123abx999999999-abc_12.partial",
            # a process id too large for os.kill
            root / f".x-{_HOST}x99999999999999-ab.tmp"]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    assert sweep_leftovers(root) == []
    assert all(path.exists() for path in keep)


def test_the_cli_cleans_leftovers_when_it_starts(tmp_path, data_dir):
    _kill_mid_write(data_dir / "voices" / "grandma", "folder")
    assert list((data_dir / "voices").glob(".grandma-*"))
    done = subprocess.run([sys.executable, "-m", "engine", "voices", "list"],
                          capture_output=True, text=True, env={**os.environ},
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert not list((data_dir / "voices").glob(".*"))


@pytest.mark.parametrize("depth", [0, 3])
def test_depth_limits_the_walk(tmp_path, depth):
    root = tmp_path / "data"
    deep = root / "a" / "b" / "c"
    deep.mkdir(parents=True)
    leftover = deep / f".model-{_HOST}x999999999-abc_12.partial"  # no such process
    leftover.mkdir()
    found = sweep_leftovers(root, depth=depth)
    assert (leftover in found) == (depth >= 3)


def test_atomic_write_text_replaces_whole(tmp_path):
    path = tmp_path / "settings.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["settings.json"]
