"""The training dialog runs ``train all`` in a worker process and shows its progress."""

from __future__ import annotations

import json

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
    dialog.epochs_spin.setValue(50)  # long enough to stop it half-way
    dialog.show()
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(dialog.loss_plot.points) >= 8, timeout=180000)
    qtbot.mouseClick(dialog.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.running, timeout=120000)
    assert dialog.stage_state["train"] == "stopped"
    assert dialog.start_button.text() == "&Resume" and dialog.banner.plain_text() == ""
    stopped_at = dialog.loss_plot.points[-1][0]
    checkpoints = app_data / "training" / "grandpa" / "checkpoints"
    assert (checkpoints / "latest").is_file()
    first_seen: list[int] = []
    original = dialog.handle

    def record(message):
        if message.get("event") == "progress" and "step" in message and not first_seen:
            first_seen.append(int(message["step"]))
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
