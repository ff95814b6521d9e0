"""Whisper sizes in the window: the Settings list (sizes, what is here, Download) and Models.

Downloads go through the real huggingface_hub over HTTP to a local fake Hub serving the bundled
CTranslate2 tiny.en under a catalogue repo id (tests/fake_hub.py); nothing reaches the internet.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from app.dialogs.models_dialog import ModelsDialog
from app.dialogs.settings_dialog import DETAIL_ROLE, SettingsDialog
from app.pull_task import STEPS
from app.workers import WorkerPool
from engine import settings as settings_store
from engine.install import asr_pull
from engine.models.catalogue import asr_catalogue
from engine.settings import Settings
from tests.fake_hub import FakeHub, SlowHub
from tests.test_asr_models import SMALL_REPO, whisper_repo

__all__ = ["whisper_repo"]  # a fixture shared with the engine's tests (online/offline: conftest)

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture(autouse=True)
def hf_cache(private_hf_cache):
    """A private, empty Hugging Face cache for every test here."""
    return private_hf_cache


@pytest.fixture
def settings_dialog(qtbot, app_data):
    """The Settings dialog on its own pool, its startup work done."""
    pool = WorkerPool()
    dialog = SettingsDialog(Settings(), pool)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: not pool.running, timeout=15000)
    yield dialog
    pool.shutdown()


@pytest.fixture
def models_dialog(qtbot, app_data):
    pool = WorkerPool()
    dialog = ModelsDialog(pool)
    qtbot.addWidget(dialog)
    dialog.show()
    yield dialog
    pool.shutdown()


def items(combo) -> dict[str, tuple[str, str]]:
    """Each item of a combo: value -> (text, detail)."""
    return {combo.itemData(i): (combo.itemText(i), combo.itemData(i, DETAIL_ROLE) or "")
            for i in range(combo.count())}


def choose(dialog: SettingsDialog, size: str) -> None:
    combo = dialog.asr_model_combo
    combo.setCurrentIndex(combo.findData(size))


def ok_button(dialog: SettingsDialog):
    return dialog.button_box.button(QDialogButtonBox.StandardButton.Ok)


# -- the Settings dialog -------------------------------------------------------------------------


def test_settings_list_every_size_with_its_download_size_and_state(settings_dialog,
                                                                   qtbot):
    listed = items(settings_dialog.asr_model_combo)
    sizes = [e.size for e in asr_catalogue()]
    assert list(listed) == ["auto", *sizes]
    assert settings_dialog.asr_model_combo.currentData() == "auto"  # the default
    assert "small.en on a GPU" in listed["auto"][0]
    assert listed["small.en"] == ("small.en", "487 MB, to download")
    assert listed["large-v3"] == ("large-v3", "3090 MB, to download")
    assert listed["distil-large-v3"][1] == "1515 MB, to download"
    assert listed["bundled"][1] == "78 MB, ships with the app"
    # The open list draws the detail beside the name (and says it to a screen reader); the
    # closed box keeps the name alone.
    combo = settings_dialog.asr_model_combo
    row = combo.findData("small.en")
    assert combo.itemData(row, Qt.ItemDataRole.AccessibleTextRole) == (
        "small.en, 487 MB, to download")
    view = combo.view()
    index = view.model().index(row, 0)
    metrics = combo.fontMetrics()
    hint = view.sizeHintForIndex(index).width()
    assert hint > metrics.horizontalAdvance("small.en    487 MB, to download")
    assert view.minimumWidth() > metrics.horizontalAdvance(
        "distil-large-v3    1515 MB, to download")
    combo.showPopup()
    qtbot.waitUntil(view.isVisible, timeout=5000)
    image = view.grab(view.visualRect(index)).toImage()
    right = image.copy(image.width() // 2, 0, image.width() // 2, image.height())
    assert any(right.pixelColor(x, y) != right.pixelColor(0, 0)
               for x in range(right.width()) for y in range(right.height())), \
        "the detail is drawn in the right half of the row"
    combo.hidePopup()
    # Nothing to download for what is here.
    assert settings_dialog.asr_download_button.isHidden()
    choose(settings_dialog, "bundled")
    assert "Ships with the app" in settings_dialog.asr_model_note.text()
    assert settings_dialog.asr_download_button.isHidden()


def test_choosing_a_size_not_here_offers_it_and_downloads_it(settings_dialog, qtbot, online,
                                                             whisper_repo):
    choose(settings_dialog, "small.en")
    assert "487 MB to download" in settings_dialog.asr_model_note.text()
    button = settings_dialog.asr_download_button
    assert button.isVisible() and button.isEnabled()
    seen: list[int] = []
    panel = settings_dialog.asr_pull_panel
    panel.progress_bar.valueChanged.connect(seen.append)
    width = settings_dialog.width()
    with FakeHub(SMALL_REPO, whisper_repo) as hub:
        online(hub)
        with qtbot.waitSignal(panel.succeeded, timeout=60000):
            qtbot.mouseClick(button, LEFT)
            assert panel.busy and panel.isVisible()
            assert settings_dialog.asr_model_note.isHidden() and button.isHidden()
            assert settings_dialog.width() == width  # the bar takes the note's line
            assert not ok_button(settings_dialog).isEnabled()  # saving waits for the download
            assert not settings_dialog.asr_model_combo.isEnabled()
        qtbot.waitUntil(lambda: not panel.busy, timeout=10000)
    assert seen[-1] == STEPS and any(0 < v < STEPS for v in seen), seen
    assert asr_pull.is_ready("small.en")
    assert items(settings_dialog.asr_model_combo)["small.en"][1] == "487 MB, downloaded"
    assert "Downloaded (487 MB); works offline" in settings_dialog.asr_model_note.text()
    assert button.isHidden() and panel.isHidden()
    assert "Whisper small.en is downloaded" in settings_dialog.banner.plain_text()
    assert ok_button(settings_dialog).isEnabled()
    assert "small.en is downloaded: it runs on a GPU" in _note_for(settings_dialog, "auto")
    choose(settings_dialog, "small.en")
    qtbot.mouseClick(ok_button(settings_dialog), LEFT)
    assert settings_store.load()[0].asr_model == "small.en"


def _note_for(dialog: SettingsDialog, size: str) -> str:
    previous = dialog.asr_model_combo.currentData()
    choose(dialog, size)
    note = dialog.asr_model_note.text()
    choose(dialog, previous)
    return note


def test_cancelling_the_download_leaves_the_size_absent(settings_dialog, qtbot, online,
                                                        whisper_repo):
    choose(settings_dialog, "small.en")
    panel = settings_dialog.asr_pull_panel
    with SlowHub(SMALL_REPO, whisper_repo, pause=0.05) as hub:
        online(hub)
        qtbot.mouseClick(settings_dialog.asr_download_button, LEFT)
        qtbot.waitUntil(lambda: panel.progress_bar.value() > 0, timeout=20000)
        assert panel.cancel_button.text() == "Cancel do&wnload"
        with qtbot.waitSignal(panel.failed, timeout=20000):
            qtbot.mouseClick(panel.cancel_button, LEFT)
        qtbot.waitUntil(lambda: not panel.busy, timeout=20000)
    assert hub.sent["model.bin"] < (whisper_repo / "model.bin").stat().st_size
    assert "cancelled" in settings_dialog.banner.plain_text()
    assert not asr_pull.is_ready("small.en")
    assert settings_dialog.asr_download_button.isVisible()  # offered again
    assert ok_button(settings_dialog).isEnabled() and settings_dialog.asr_model_combo.isEnabled()


def test_closing_settings_cancels_the_download(settings_dialog, qtbot, online, whisper_repo):
    choose(settings_dialog, "small.en")
    panel = settings_dialog.asr_pull_panel
    with SlowHub(SMALL_REPO, whisper_repo, pause=0.05) as hub:
        online(hub)
        qtbot.mouseClick(settings_dialog.asr_download_button, LEFT)
        qtbot.waitUntil(lambda: panel.progress_bar.value() > 0, timeout=20000)
        settings_dialog.reject()
        qtbot.waitUntil(lambda: not panel.busy, timeout=20000)
    assert hub.sent["model.bin"] < (whisper_repo / "model.bin").stat().st_size
    assert not asr_pull.is_ready("small.en")


def test_offline_download_explains_itself_in_the_windows_words(settings_dialog, qtbot,
                                                               offline):
    choose(settings_dialog, "base.en")
    panel = settings_dialog.asr_pull_panel
    with qtbot.waitSignal(panel.failed, timeout=20000):
        qtbot.mouseClick(settings_dialog.asr_download_button, LEFT)
    qtbot.waitUntil(lambda: not panel.busy, timeout=10000)
    text = settings_dialog.banner.plain_text()
    assert "Download failed" in text and "Cannot download Whisper base.en" in text
    assert "HF_HUB_OFFLINE environment variable is set" in text and "press Download" in text
    assert "Add folder" not in text and "talk-to-transformers" not in text
    assert settings_dialog.asr_download_button.isVisible()


# -- the Models dialog ---------------------------------------------------------------------------


def _row(dialog: ModelsDialog, entry_id: str):
    return next(r for r in dialog.rows if r.id == entry_id)


def test_models_dialog_lists_pulls_and_removes_whisper_sizes(models_dialog, qtbot, online,
                                                            whisper_repo, monkeypatch):
    cells = {models_dialog.table.item(i, 0).text():
             [models_dialog.table.item(i, c).text() for c in range(4)]
             for i in range(models_dialog.table.rowCount())}
    assert cells["Whisper small.en"][1:] == ["speech model", "487", "not downloaded"]
    assert cells["Distil-Whisper large-v3"][1:] == ["speech model", "1,515", "not downloaded"]
    assert cells["Whisper tiny.en (bundled)"][1:] == ["speech model", "78", "ready (bundled)"]
    models_dialog.select("whisper-bundled")
    assert not models_dialog.pull_button.isEnabled()
    assert not models_dialog.remove_button.isEnabled()  # it ships with the app
    models_dialog.select("whisper-small.en")
    assert models_dialog.pull_button.isEnabled() and not models_dialog.remove_button.isEnabled()

    with FakeHub(SMALL_REPO, whisper_repo) as hub:
        online(hub)
        with qtbot.waitSignal(models_dialog.personas_changed, timeout=60000):
            qtbot.mouseClick(models_dialog.pull_button, LEFT)
        qtbot.waitUntil(lambda: not models_dialog.pull_panel.busy, timeout=10000)
    row = _row(models_dialog, "whisper-small.en")
    assert row.status == "ready" and row.ready
    text = models_dialog.banner.plain_text()
    assert "Whisper small.en is ready" in text and "Settings" in text and "--model" not in text
    models_dialog.select("whisper-small.en")
    assert not models_dialog.pull_button.isEnabled() and models_dialog.remove_button.isEnabled()

    asked: list[str] = []

    def yes(parent, title, text, *args):
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", staticmethod(yes))
    with qtbot.waitSignal(models_dialog.personas_changed, timeout=10000):
        qtbot.mouseClick(models_dialog.remove_button, LEFT)
    qtbot.waitUntil(lambda: not models_dialog.workers.running, timeout=10000)
    assert "Remove Whisper small.en" in asked[0]
    assert "Removed Whisper small.en" in models_dialog.banner.plain_text()
    assert _row(models_dialog, "whisper-small.en").status == "not downloaded"
    assert not asr_pull.is_ready("small.en")
