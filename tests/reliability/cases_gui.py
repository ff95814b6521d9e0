"""Bad input through the window (pytest-qt): what the banner says, and that the window goes on."""

from __future__ import annotations

import html
import json
import re

from tests.reliability.matrix import Case, Ctx, Got


def _window(ctx: Ctx, settings, *, chat=None, warning: str | None = None, ready=("chat",)):
    """The main window with real engine parts, the chat backend swapped where given."""
    from app.backends import EngineBackends
    from app.controller import Controller
    from app.main_window import MainWindow

    qtbot = ctx.fixture("gui")

    class Backends(EngineBackends):
        def chat(self, persona, settings):
            return chat if chat is not None else super().chat(persona, settings)

        def recognizer(self, settings):  # typed cases: spare the speech model's load
            from tests.fakes import FakeRecognizer

            return FakeRecognizer()

    controller = Controller(settings, backends=Backends())
    window = MainWindow(settings, controller=controller, settings_warning=warning)
    qtbot.addWidget(window)
    window.show()
    window.start()
    qtbot.waitUntil(lambda: all(controller.states[p] in ("ready", "failed") for p in ready),
                    timeout=60000)
    return window, qtbot


def _banner(window) -> str:
    """The banner as a person reads it (its label is rich text)."""
    return html.unescape(re.sub(r"<[^>]+>", "", window.banner.plain_text()))


def _events(window) -> list:
    events: list = []
    window.controller.pipeline_event.connect(events.append)
    return events


def _wait_turn(qtbot, events) -> None:
    from engine.pipeline import events as ev

    qtbot.waitUntil(lambda: any(e.type in (ev.TURN_DONE, ev.ERROR) for e in events),
                    timeout=30000)


def _keeps_working(window, qtbot) -> None:
    """After the error the window still answers a plain message."""
    from engine.pipeline import events as ev

    events = _events(window)
    window.send("hello again")
    qtbot.waitUntil(lambda: any(e.type == ev.TURN_DONE for e in events), timeout=30000)


def _settings(ctx: Ctx, **changes):
    from engine.settings import Settings

    return Settings(persona=str(ctx.tiny), speak_replies=False, **changes)


def gui_damaged_settings(ctx: Ctx) -> Got:
    """The start-up path of app/main.py: a damaged file is a warning in the window."""
    from engine import paths
    from engine import settings as settings_file

    path = paths.settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"persona": ')
    loaded, warning = settings_file.load()
    window, qtbot = _window(ctx, loaded.replace(persona=str(ctx.tiny), speak_replies=False),
                            warning=warning)
    text = _banner(window)
    window.close()
    return Got(text)


def gui_100kb_message(ctx: Ctx) -> Got:
    window, qtbot = _window(ctx, _settings(ctx), chat=ctx.fixture("tiny_chat"))
    events = _events(window)
    window.send("weather " * 12800)
    _wait_turn(qtbot, events)
    text = _banner(window)
    _keeps_working(window, qtbot)
    window.close()
    return Got(text)


def gui_broken_persona(ctx: Ctx) -> Got:
    folder = ctx.tmp / "halfbaked"
    folder.mkdir()
    (folder / "persona.json").write_text(json.dumps({"name": "Halfbaked", "base_model": "x",
                                                     "prompt_format": "alpaca"}))
    window, qtbot = _window(ctx, _settings(ctx).replace(persona=str(folder)))
    assert window.controller.states["chat"] == "failed"
    text = _banner(window)
    window.close()
    return Got(text)


def gui_remote_401(ctx: Ctx) -> Got:
    import huggingface_hub.constants

    from engine.chat.remote import RemoteChat, RetryPolicy
    from tests.reliability.cases_io import _serving

    ctx.monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    tiny = ctx.fixture("tiny_chat")
    with _serving("401") as url:
        remote = RemoteChat(url, tiny.persona, tiny.loaded.tokenizer,
                            tiny.loaded.context_tokens, retry=RetryPolicy(attempts=1))
        window, qtbot = _window(ctx, _settings(ctx), chat=remote)
        events = _events(window)
        window.send("hello")
        _wait_turn(qtbot, events)
        text = _banner(window)
        window.close()
    return Got(text)


def gui_disk_full(ctx: Ctx) -> Got:
    """The database stops growing while the window is open.

    The error shows in the banner; the conversation saved before survives.
    """
    window, qtbot = _window(ctx, _settings(ctx), chat=ctx.fixture("tiny_chat"))
    _keeps_working(window, qtbot)  # one turn saved before the disk fills
    conversation = window.controller.conversation_id
    db = window.controller.session.store._db
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
    events = _events(window)
    window.send("a long message " * 300)
    _wait_turn(qtbot, events)
    text = _banner(window)
    window.close()
    from engine.store import ConversationStore

    store = ConversationStore(ctx.data / "conversations.sqlite3")
    kept = [t.text for t in store.turns(conversation)]
    store.close()
    assert kept and kept[0] == "hello again"
    return Got(text)


CASES = [
    Case("gui-settings-damaged", "gui", "settings.json cut short, window opens",
         "The settings file is damaged", gui_damaged_settings),
    Case("gui-text-100kb", "gui", "a 100 kB message typed into the window",
         "this persona can take at most", gui_100kb_message),
    Case("gui-persona-unknown-format", "gui", "the window's persona has prompt_format 'alpaca'",
         "Field 'prompt_format' must be one of", gui_broken_persona),
    Case("gui-remote-401", "gui", "the remote server answers 401", "refused the token",
         gui_remote_401),
    Case("gui-disk-full", "gui", "the database cannot grow during a turn",
         "database or disk is full", gui_disk_full),
]
