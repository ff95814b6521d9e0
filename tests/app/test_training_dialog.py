"""The training dialog runs ``train all`` in a worker process and shows its progress."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.dialogs.training_dialog import TrainingDialog

TURNS = [["How was your day?", "Busy, I fixed the fence.", "Did it take long?",
          "All morning, but it stands straight now."],
         ["Do you want tea?", "Yes please, with honey.", "Coming right up."],
         ["What are you reading?", "An old sailing book.", "Is it good?",
          "The storms are the best part."]] * 4


def dialogue_file(folder):
    path = folder / "grandpa.jsonl"
    path.write_text("\n".join(json.dumps({"id": str(i), "turns": t})
                              for i, t in enumerate(TURNS)) + "\n")
    return path


def make_dialog(qtbot, tiny_persona_dir, tmp_path, *, steps: int):
    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    dialog.file_radio.setChecked(True)
    dialog.file_edit.setText(str(dialogue_file(tmp_path)))
    dialog.base_combo.setEditText(str(tiny_persona_dir))
    dialog.method_combo.setCurrentIndex(1)  # full
    dialog.name_edit.setText("Grandpa")
    dialog.extra_args = ["--max-steps", str(steps), "--save-every", "5", "--device", "cpu",
                         "--max-tokens", "128"]
    return dialog


def test_a_run_from_a_dialogue_file_makes_a_persona(qtbot, app_data, tiny_persona_dir,
                                                    tmp_path):
    import numpy as np
    import soundfile as sf

    from engine.voices.store import voices_dir

    voice = voices_dir() / "gran"  # an enrolled voice for the persona to speak in
    voice.mkdir(parents=True)
    (voice / "voice.json").write_text('{"name": "Gran", "created": 0, "source": "t"}')
    sf.write(voice / "sample.wav", np.full(24000, 0.1, np.float32), 24000)
    np.save(voice / "embedding.npy", np.ones(256, np.float32) / 16)
    dialog = make_dialog(qtbot, tiny_persona_dir, tmp_path, steps=8)
    dialog.voice_combo.setCurrentIndex(dialog.voice_combo.findData("Gran"))
    assert dialog.command()[-10:-8] == ["--voice", "Gran"]
    dialog.show()
    with qtbot.waitSignal(dialog.persona_created, timeout=180000) as created:
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
        assert dialog.running and not dialog.start_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.running, timeout=60000)
    assert created.args == ["grandpa"]
    persona = json.loads((app_data / "personas" / "grandpa" / "persona.json").read_text())
    assert persona["default_voice"] == "Gran"
    assert all(dialog.stage_state.get(s) == "done" for s in ("dataset", "train", "export"))
    assert len(dialog.loss_plot.points) >= 2  # the loss was plotted as it came
    assert "Done" in dialog.status_label.text() and dialog.start_button.isEnabled()


def test_stop_then_resume_carries_on_from_the_checkpoint(qtbot, app_data, tiny_persona_dir,
                                                         tmp_path):
    dialog = make_dialog(qtbot, tiny_persona_dir, tmp_path, steps=100000)
    stop_a_run(qtbot, dialog)
    assert dialog.stage_state["train"] == "stopped"
    assert dialog.start_button.text() == "&Resume" and dialog.banner.plain_text() == ""
    stopped_at = dialog.loss_plot.points[-1][0]
    checkpoints = app_data / "training" / "grandpa" / "checkpoints"
    assert (checkpoints / "latest").is_file()
    first_seen: list[int] = []
    original = dialog.handle

    def record(message):
        if message.event == "progress" and message.step is not None and not first_seen:
            first_seen.append(message.step)
        original(message)

    dialog.handle = record
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)  # Resume
    qtbot.waitUntil(lambda: bool(first_seen), timeout=180000)
    dialog.close()  # closing stops it at a checkpoint too
    assert not dialog.running
    # The resumed run started after the last checkpoint, not from step 1.
    assert 1 < first_seen[0] <= stopped_at + 1


def test_missing_inputs_and_a_failing_run_are_explained(qtbot, app_data, tmp_path):
    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert "name" in dialog.banner.plain_text().lower() and not dialog.running
    dialog.name_edit.setText("Nobody")
    dialog.file_radio.setChecked(True)
    dialog.file_edit.setText(str(tmp_path / "missing.jsonl"))
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert "dialogue file" in dialog.banner.plain_text() and not dialog.running
    dialog.file_edit.setText(str(dialogue_file(tmp_path)))
    dialog.base_combo.setEditText(str(tmp_path / "no-such-model"))
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.running, timeout=120000)
    text = dialog.banner.plain_text()
    assert "Training" in text and "no-such-model" in text and "Traceback" not in text
    assert dialog.start_button.isEnabled()


DEJAVU_SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
MEDIUM = "microsoft/DialoGPT-medium"


@pytest.fixture
def dejavu(qtbot):
    """DejaVu Sans (the usual Linux UI font), to check the dialog draws no missing-glyph box."""
    from PySide6.QtGui import QRawFont

    if not DEJAVU_SANS.is_file():
        pytest.skip("needs DejaVu Sans (fonts-dejavu-core)")
    font = QRawFont(str(DEJAVU_SANS), 12)
    return lambda text: [c for c in text if not font.supportsCharacter(ord(c))]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache: no DialoGPT is on this computer."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def stop_a_run(qtbot, dialog):
    """Start, stop after a few training steps; the run's checkpoint is on disk."""
    dialog.epochs_spin.setValue(50)  # long enough to stop it half-way
    dialog.show()
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(dialog.loss_plot.points) >= 8, timeout=180000)
    qtbot.mouseClick(dialog.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.running, timeout=120000)


def test_the_default_base_is_on_this_computer_and_a_missing_one_is_explained(
        qtbot, app_data, hub_cache, tmp_path):
    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    assert dialog.base_ref() == "starter" and dialog.base_note.isHidden()  # bundled: always here
    qtbot.mouseClick(dialog.recipe_button, Qt.MouseButton.LeftButton)  # Berkeley: medium
    note = dialog.base_note.text()
    assert dialog.base_ref() == MEDIUM and not dialog.base_note.isHidden()
    assert "not on this computer" in note and "Models and personas" in note and "Pull" in note
    dialog.base_combo.setEditText(str(tmp_path / "no-such-model"))
    assert "no model folder" in dialog.base_note.text()
    snapshot = hub_cache / "models--microsoft--DialoGPT-small" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)  # DialoGPT small pulled, as a pull leaves it
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"0")
    pulled = TrainingDialog()
    qtbot.addWidget(pulled)
    assert pulled.base_ref() == "microsoft/DialoGPT-small" and pulled.base_note.isHidden()


def test_a_dialogue_file_needs_no_fetching_or_filtering(qtbot, app_data):
    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    labels = dialog.stage_labels
    assert all(label.isEnabled() for label in labels.values())
    dialog.file_radio.setChecked(True)
    assert [s for s, label in labels.items() if not label.isEnabled()] == ["scrape", "filter"]
    assert dialog.stage_state["scrape"] == dialog.stage_state["filter"] == "unused"
    dialog.subreddit_radio.setChecked(True)
    assert all(label.isEnabled() for label in labels.values())


def test_stage_marks_use_only_characters_dejavu_sans_has(qtbot, app_data, dejavu):
    from training.progress import STATE_WORDS

    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    for state in STATE_WORDS:
        dialog._mark("train", state)
        assert dejavu(dialog.stage_labels["train"].text()) == [], state


def test_a_run_shows_what_evaluate_does_and_then_its_figures(qtbot, app_data, tiny_persona_dir,
                                                             tmp_path):
    dialog = make_dialog(qtbot, tiny_persona_dir, tmp_path, steps=8)
    statuses: list[str] = []
    original = dialog.handle

    def record(message):
        original(message)
        statuses.append(dialog.status_label.text())

    dialog.handle = record
    dialog.show()
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.running, timeout=180000)
    assert dialog.stage_state["evaluate"] == "done", dialog.banner.plain_text()
    assert any(s.startswith("Evaluate: Scoring the validation set") for s in statuses)
    assert any(s.startswith("Evaluate: Writing sample replies") and "/" in s for s in statuses)
    shown = dialog.eval_view.toPlainText()
    assert not dialog.eval_view.isHidden() and dialog.eval_view.isReadOnly()
    figures = json.loads((app_data / "training" / "grandpa" / "eval.json").read_text())
    assert f"base {figures['perplexity']['base']:.1f} → fine-tuned " in shown
    sample = figures["samples"][0]
    assert f"You: {sample['prompt']}" in shown and "    fine-tuned: " in shown
    # A dialogue file was never fetched or filtered: those stages stay greyed out, unticked.
    for stage in ("scrape", "filter"):
        assert dialog.stage_state[stage] == "unused" and not dialog.stage_labels[stage].isEnabled()
        assert "✓" not in dialog.stage_labels[stage].text()


def test_a_stopped_run_says_where_and_resume_is_offered_only_for_its_checkpoint(
        qtbot, app_data, tiny_persona_dir, tmp_path, dejavu):
    dialog = make_dialog(qtbot, tiny_persona_dir, tmp_path, steps=100000)
    assert dialog.start_button.text() == "&Start"
    stop_a_run(qtbot, dialog)
    stopped_at = dialog.loss_plot.points[-1][0]
    bar = dialog.progress_bar
    assert re.fullmatch(rf"Stopped at step {stopped_at} of \d+", bar.text()), bar.text()
    assert bar.value() < bar.maximum() and dialog.eta_label.text() == ""
    shown = [label.text() for label in dialog.stage_labels.values()]
    assert dejavu("".join(shown) + bar.text() + dialog.status_label.text()) == []
    assert dialog.start_button.text() == "&Resume"
    dialog.name_edit.setText("Grandma")  # another name: another run folder, a new run
    assert dialog.start_button.text() == "&Start"
    dialog.name_edit.setText("Grandpa")
    assert dialog.start_button.text() == "&Resume"
    dialog.epochs_spin.setValue(49)  # its checkpoint cannot carry on with other settings
    assert dialog.start_button.text() == "&Start"


def test_a_failed_run_names_the_dialog_fields_and_stops_the_busy_bar(
        qtbot, app_data, tiny_persona_dir, tmp_path):
    dialog = make_dialog(qtbot, tiny_persona_dir, tmp_path, steps=100000)
    stop_a_run(qtbot, dialog)
    dialog.batch_spin.setValue(3)  # the stopped run used 4: it cannot be resumed like this
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.running, timeout=120000)
    text = dialog.banner.plain_text()
    assert "other settings" in text and "Traceback" not in text
    assert "run folder" not in text and "Name" in text and "Batch size" in text
    assert dialog.stage_state["train"] == "failed"
    assert dialog.progress_bar.maximum() > 0  # not the moving busy bar
    assert dialog.progress_bar.text() == "Failed at Fine-tune"
    assert dialog.start_button.isEnabled() and dialog.name_edit.isEnabled()


def test_the_dialog_reads_messages_ignores_chatter_and_reports_a_bad_line(qtbot, app_data):
    dialog = TrainingDialog()
    qtbot.addWidget(dialog)
    dialog.feed("Downloading tokenizer... 100%\n")  # a library's chatter: ignored
    dialog.feed('{"stage": "train", "event": "start", "text": "full fine-')  # half a line
    assert dialog.stage_state["train"] == "" and dialog.banner.plain_text() == ""
    dialog.feed('tune"}\n{"stage": "train", "event": "progress", "step": 2, "total_steps": 8, '
                '"loss": 3.5, "eta_s": 30}\n')
    assert dialog.stage_state["train"] == "running" and dialog.loss_plot.points == [(2, 3.5)]
    assert dialog.eta_label.text() == "ETA 0m30s"
    dialog.feed('{"stage": "train", "event": "exploded"}\n{"stage": "train", "event": '
                '"progress", "step": 3, "total_steps": 8, "loss": 3.25}\n')
    text = dialog.banner.plain_text()
    assert "could not be read" in text and "Unknown progress event 'exploded'" in text
    assert dialog.loss_plot.points[-1] == (3, 3.25)  # the run is still shown
    dialog.feed("{broken\n")
    assert dialog.banner.plain_text() == text  # said once a run
