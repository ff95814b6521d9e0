"""The main window end to end: typed and spoken turns through the real engine, in pytest-qt.

The chat models are real (the tiny DialoGPT fixture, and the SmolLM2 starter in a slow test),
speech recognition is the bundled Whisper tiny.en, and a recording stands in for the microphone
(``FileMicrophone``) except in the one test that goes through the PulseAudio virtual microphone.
"""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app.backends import EngineBackends
from app.controller import Controller
from app.main_window import MainWindow
from engine.audio.filesource import FileMicrophone
from engine.errors import TalkError
from engine.pipeline import events as ev
from engine.settings import Settings
from engine.store import ConversationStore
from tests.fakes import FakeChat, FakePlayer, FakeTTS
from tests.speech import SENTENCES, speech_array, word_error_rate

QUESTION = "What is the capital of France?"
SPOKEN = SENTENCES[1]  # tiny.en hears this espeak sentence reliably


class Backends(EngineBackends):
    """The real parts, except those a test swaps in."""

    def __init__(self, *, microphone=None, chat=None, voice_output=None):
        self._microphone, self._chat, self._voice_output = microphone, chat, voice_output

    def microphone(self, settings):
        if self._microphone is None:
            return super().microphone(settings)
        if isinstance(self._microphone, Exception):
            raise self._microphone
        return self._microphone()

    def chat(self, persona, settings):
        return self._chat if self._chat is not None else super().chat(persona, settings)

    def voice_output(self, settings):
        if self._voice_output is None:
            return super().voice_output(settings)
        return self._voice_output()


def open_window(qtbot, settings, backends=None, *, wait_for=("chat", "asr")):
    controller = Controller(settings, backends=backends or Backends())
    window = MainWindow(settings, controller=controller)
    qtbot.addWidget(window)
    events: list = []
    controller.pipeline_event.connect(events.append)
    window.show()
    window.start()
    qtbot.waitUntil(lambda: all(controller.states[p] in ("ready", "failed") for p in wait_for),
                    timeout=120000)
    assert all(controller.states[p] == "ready" for p in wait_for), window.banner.plain_text()
    return window, events


def close(window):
    window.close()


def turn_done(events, count=1):
    return lambda: sum(e.type == ev.TURN_DONE for e in events) >= count


def test_typed_chat_streams_is_stored_and_survives_reopening(qtbot, app_data, tiny_persona_dir):
    settings = Settings(persona=str(tiny_persona_dir), speak_replies=False)
    window, events = open_window(qtbot, settings)
    assert window.backend_label.text() == "Tiny DialoGPT · CPU"  # where it runs, in words
    window.input.setFocus()
    qtbot.keyClicks(window.input, "hello there")
    qtbot.keyClick(window.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.input, "second line")
    assert window.input.toPlainText() == "hello there\nsecond line"  # Shift+Enter: a new line
    qtbot.keyClick(window.input, Qt.Key.Key_Return)  # Enter sends
    qtbot.waitUntil(turn_done(events), timeout=60000)
    assert window.input.toPlainText() == ""
    tokens = [e for e in events if e.type == ev.REPLY_TOKEN]
    assert tokens, "the reply streamed in pieces"
    shown = [(m.role, m.text, m.status) for m in window.chat_view.messages]
    assert shown[0] == ("user", "hello there\nsecond line", "done")
    assert shown[1][0] == "assistant" and shown[1][1] and shown[1][2] == "done"
    assert window.chat_view.toPlainText().count("hello there") == 1
    conversation = window.controller.conversation_id
    close(window)

    store = ConversationStore(app_data / "conversations.sqlite3")
    stored = [(t.role, t.text) for t in store.turns(conversation)]
    store.close()
    assert stored == [(role, text) for role, text, _ in shown]
    again, _ = open_window(qtbot, settings)
    assert [(m.role, m.text) for m in again.chat_view.messages] == stored
    assert again.conversations.current_id() == conversation
    close(again)


@pytest.mark.slow
def test_typed_chat_with_the_real_starter_persona(qtbot, app_data):
    window, events = open_window(qtbot, Settings(persona="starter", speak_replies=False),
                                 wait_for=("chat",))
    window.send(QUESTION)
    qtbot.waitUntil(turn_done(events), timeout=120000)
    reply = window.chat_view.messages[-1]
    assert reply.role == "assistant" and "Paris" in reply.text
    assert "Paris" in window.chat_view.toPlainText()
    assert window.timings_label.text().startswith("Last turn:")
    close(window)


def test_push_to_talk_with_a_recording_speaks_the_reply(qtbot, app_data, tiny_persona_dir,
                                                         tmp_path):
    audio = speech_array(SPOKEN, tmp_path)
    mic = FileMicrophone(audio, speed=4.0)
    player = FakePlayer(speed=20.0)
    backends = Backends(microphone=lambda: mic, voice_output=lambda: (FakeTTS(), player))
    settings = Settings(persona=str(tiny_persona_dir))
    window, events = open_window(qtbot, settings, backends, wait_for=("chat", "asr", "voice"))
    qtbot.mousePress(window.talk_button, Qt.MouseButton.LeftButton)
    assert window.controller.talking and mic.started == 1
    qtbot.waitUntil(lambda: any(e.type == ev.LEVEL and e.data["dbfs"] > -40 for e in events))
    qtbot.wait(int(len(audio) / 16000 / 4.0 * 1000) + 300)  # the whole question "said"
    qtbot.mouseRelease(window.talk_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(turn_done(events), timeout=60000)
    kinds = [e.type for e in events if e.type not in (ev.LEVEL, ev.REPLY_TOKEN)]
    assert kinds[:4] == [ev.LISTENING, ev.SPEECH_ENDED, ev.TURN_STARTED, ev.TRANSCRIPT]
    assert kinds[-1] == ev.TURN_DONE and ev.REPLY_DONE in kinds
    transcript = next(e.data["text"] for e in events if e.type == ev.TRANSCRIPT)
    assert word_error_rate(SPOKEN, transcript) <= 0.35, transcript
    assert window.chat_view.messages[0].text == transcript
    assert window.chat_view.messages[1].role == "assistant"
    # The random tiny model's reply has no sentence end; the tail is still spoken at the end.
    assert ev.SPEAKING_STARTED in kinds and player.played
    assert "first audio" in window.timings_label.text()
    close(window)
    player.close()


@pytest.mark.audio
def test_push_to_talk_through_the_virtual_microphone(qtbot, app_data, tiny_persona_dir, pulse,
                                                      tmp_path):
    from tests.speech import speak

    wav = speak(SPOKEN, tmp_path, rate=48000, channels=2)
    window, events = open_window(qtbot, Settings(persona=str(tiny_persona_dir),
                                                 speak_replies=False))
    window.chat_view.setFocus()
    qtbot.keyPress(window, Qt.Key.Key_Space)  # the hold-to-talk key, outside the text box
    assert window.controller.talking
    time.sleep(0.3)
    pulse.play(wav).wait(timeout=30)
    time.sleep(0.3)
    qtbot.keyRelease(window, Qt.Key.Key_Space)
    qtbot.waitUntil(turn_done(events), timeout=60000)
    transcript = next(e.data["text"] for e in events if e.type == ev.TRANSCRIPT)
    assert word_error_rate(SPOKEN, transcript) <= 0.35, transcript
    assert max(e.data["dbfs"] for e in events if e.type == ev.LEVEL) > -40
    close(window)


def test_space_types_in_the_text_box_but_talks_elsewhere(qtbot, app_data, tiny_persona_dir,
                                                         tmp_path):
    mic = FileMicrophone(speech_array("Hello.", tmp_path), speed=4.0)
    settings = Settings(persona=str(tiny_persona_dir), speak_replies=False)
    window, events = open_window(qtbot, settings, Backends(microphone=lambda: mic))
    window.activateWindow()
    window.input.setFocus()
    qtbot.keyClick(window.input, Qt.Key.Key_Space)
    assert window.input.toPlainText() == " " and not window.controller.talking
    window.chat_view.setFocus()
    qtbot.keyPress(window.chat_view, Qt.Key.Key_Space)
    assert window.controller.talking
    qtbot.wait(700)
    qtbot.keyRelease(window.chat_view, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: not window.controller.talking, timeout=1000)  # after the debounce
    qtbot.waitUntil(turn_done(events), timeout=60000)
    close(window)


def test_holding_space_through_unflagged_auto_repeats_is_one_turn(qtbot, app_data,
                                                                   tiny_persona_dir, tmp_path):
    """A held Space is one turn, however the key repeats.

    As the walkthrough saw on X11: a held key repeats as release+press pairs, and after about
    a second Qt stops flagging them as auto-repeats.
    """
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication

    audio = speech_array("What is the weather like today?", tmp_path)
    mic = FileMicrophone(audio, speed=4.0)
    window, events = open_window(qtbot, Settings(persona=str(tiny_persona_dir),
                                                 speak_replies=False),
                                 Backends(microphone=lambda: mic))
    window.activateWindow()
    window.chat_view.setFocus()

    def key(kind, repeat: bool) -> None:
        QApplication.sendEvent(window.chat_view, QKeyEvent(
            kind, Qt.Key.Key_Space, Qt.KeyboardModifier.NoModifier, " ", repeat))

    key(QEvent.Type.KeyPress, False)
    assert window.controller.talking
    for flagged in [True] * 10 + [False] * 20:  # 30 repeats, 33 ms apart
        qtbot.wait(33)
        key(QEvent.Type.KeyRelease, flagged)
        key(QEvent.Type.KeyPress, flagged)
        assert window.controller.talking
    key(QEvent.Type.KeyRelease, False)  # the key really comes up
    qtbot.waitUntil(turn_done(events), timeout=60000)
    qtbot.wait(300)
    kinds = [e.type for e in events if e.type not in (ev.LEVEL, ev.REPLY_TOKEN)]
    assert kinds.count(ev.LISTENING) == 1 and kinds.count(ev.TURN_STARTED) == 1, kinds
    assert mic.started == 1 and ev.ERROR not in kinds
    users = [m for m in window.chat_view.messages if m.role == "user"]
    assert len(users) == 1 and users[0].text.strip()
    close(window)


def test_a_tap_of_the_talk_key_says_no_speech_and_adds_no_message(qtbot, app_data,
                                                                   tiny_persona_dir):
    import numpy as np

    mic = FileMicrophone(np.zeros(16000 * 2, np.float32), speed=1.0)
    window, events = open_window(qtbot, Settings(persona=str(tiny_persona_dir),
                                                 speak_replies=False),
                                 Backends(microphone=lambda: mic))
    window.chat_view.setFocus()
    qtbot.keyPress(window.chat_view, Qt.Key.Key_Space)
    qtbot.wait(150)
    qtbot.keyRelease(window.chat_view, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: "No speech heard" in window.banner.plain_text(), timeout=30000)
    assert window.chat_view.messages == []
    from engine.paths import conversations_db

    store = ConversationStore(conversations_db())
    assert all(not store.turns(c.id) for c in store.conversations())
    close(window)


def test_hands_free_hears_an_utterance_and_answers(qtbot, app_data, tiny_persona_dir, tmp_path):
    import numpy as np

    audio = np.concatenate([np.zeros(8000, np.float32), speech_array(SPOKEN, tmp_path)])
    mic = FileMicrophone(audio, speed=2.0)
    settings = Settings(persona=str(tiny_persona_dir), speak_replies=False)
    window, events = open_window(qtbot, settings, Backends(microphone=lambda: mic))
    qtbot.mouseClick(window.hands_free_button, Qt.MouseButton.LeftButton)
    assert window.controller.hands_free and not window.talk_button.isEnabled()
    qtbot.waitUntil(turn_done(events), timeout=60000)
    kinds = [e.type for e in events if e.type not in (ev.LEVEL, ev.REPLY_TOKEN)]
    assert kinds[:3] == [ev.LISTENING, ev.SPEECH_STARTED, ev.SPEECH_ENDED]
    heard = next(e.data["text"] for e in events if e.type == ev.TRANSCRIPT)
    assert word_error_rate(SPOKEN, heard) <= 0.35, heard
    qtbot.mouseClick(window.hands_free_button, Qt.MouseButton.LeftButton)
    assert not window.controller.hands_free and window.talk_button.isEnabled()
    close(window)


def test_closing_mid_reply_keeps_what_was_shown(qtbot, app_data):
    slow = FakeChat(*[f"word{i} " for i in range(200)], delay=0.05)
    window, events = open_window(qtbot, Settings(speak_replies=False), Backends(chat=slow),
                                 wait_for=("chat",))
    window.send("tell me a long story")
    qtbot.waitUntil(lambda: len(window.chat_view.messages) == 2
                    and len(window.chat_view.messages[1].text) > 20)
    conversation = window.controller.conversation_id
    started = time.monotonic()
    close(window)
    assert time.monotonic() - started < 10
    store = ConversationStore(app_data / "conversations.sqlite3")
    turns = store.turns(conversation)
    store.close()
    shown = window.chat_view.messages[1].text
    assert turns[1].status == "cut"
    assert turns[1].text.startswith(shown.strip()[:20])  # nothing shown is lost


def test_engine_errors_show_in_the_window_and_it_keeps_working(qtbot, app_data, tmp_path):
    from engine.audio.capture import CaptureError

    flaky = FakeChat("Fine", " thanks.", fail_after=1)
    no_mic = CaptureError("No microphone found: there is no default input device.",
                          hint="Plug in a microphone.", code="no_microphone")
    window, events = open_window(qtbot, Settings(speak_replies=False),
                                 Backends(chat=flaky, microphone=no_mic))
    window.send("hi")
    qtbot.waitUntil(lambda: any(e.type == ev.ERROR for e in events))
    assert "Reply:" in window.banner.plain_text() and "fell over" in window.banner.plain_text()
    qtbot.mousePress(window.talk_button, Qt.MouseButton.LeftButton)
    qtbot.mouseRelease(window.talk_button, Qt.MouseButton.LeftButton)
    assert "No microphone found" in window.banner.plain_text()
    flaky.fail_after = None
    window.send("again")
    qtbot.waitUntil(turn_done(events), timeout=20000)
    assert window.chat_view.messages[-1].text == "Fine thanks."
    close(window)


def test_a_persona_that_fails_to_load_is_reported(qtbot, app_data, tmp_path):
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "persona.json").write_text('{"name": "Broken"}')
    controller = Controller(Settings(persona=str(bad), speak_replies=False))
    window = MainWindow(controller.settings, controller=controller)
    qtbot.addWidget(window)
    window.controller.start()
    qtbot.waitUntil(lambda: controller.states["chat"] == "failed", timeout=30000)
    # The banner names the persona and what is wrong with its persona.json.
    assert ("Persona 'broken': persona.json is missing the required field 'prompt_format'."
            in window.banner.plain_text())
    window.send("hello")
    assert ("No persona is loaded: pick one, or pull one in Models."
            in window.banner.plain_text())
    assert window.chat_view.messages == []  # nothing was sent
    qtbot.waitUntil(lambda: controller.states["asr"] in ("ready", "failed"), timeout=60000)
    close(window)


def test_conversation_list_new_rename_search_delete(qtbot, app_data, monkeypatch):
    from PySide6.QtWidgets import QInputDialog, QMessageBox

    chat = FakeChat("Sure.")
    window, events = open_window(qtbot, Settings(speak_replies=False), Backends(chat=chat),
                                 wait_for=("chat",))
    window.send("talk about bicycles")
    qtbot.waitUntil(turn_done(events))
    first = window.controller.conversation_id
    qtbot.mouseClick(window.conversations.new_button, Qt.MouseButton.LeftButton)
    window.send("talk about boats")
    qtbot.waitUntil(turn_done(events, 2))
    second = window.controller.conversation_id
    assert first != second and set(window.conversations.ids()) >= {first, second}
    assert [m.text for m in window.chat_view.messages] == ["talk about boats", "Sure."]
    window.conversations.search_edit.setText("bicycles")
    assert window.conversations.ids() == [first]
    window.conversations.list.setCurrentRow(0)  # open it: its history is shown
    assert window.controller.conversation_id == first
    assert window.chat_view.messages[0].text == "talk about bicycles"
    offered = []
    monkeypatch.setattr(QInputDialog, "getText",
                        lambda *a, **k: offered.append(a[-1]) or ("Cycling", True))
    qtbot.mouseClick(window.conversations.rename_button, Qt.MouseButton.LeftButton)
    assert offered == ["talk about bicycles"]  # untitled: its opening words, not an empty box
    assert "Cycling" in window.conversations.list.item(0).text()
    window.conversations.search_edit.setText("")
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(window.conversations.delete_button, Qt.MouseButton.LeftButton)
    assert first not in window.conversations.ids()
    # The latest other conversation opens; no new empty one is made.
    assert window.controller.conversation_id == second
    assert window.conversations.ids() == [second]
    assert [m.text for m in window.chat_view.messages] == ["talk about boats", "Sure."]
    qtbot.mouseClick(window.conversations.delete_button, Qt.MouseButton.LeftButton)
    assert window.conversations.ids() == [window.controller.conversation_id] != [second]
    assert window.chat_view.messages == []  # the last one gone: a fresh one to type into
    close(window)


def test_stop_button_cuts_the_reply(qtbot, app_data):
    slow = FakeChat(*[f"w{i} " for i in range(100)], delay=0.05)
    window, events = open_window(qtbot, Settings(speak_replies=False), Backends(chat=slow),
                                 wait_for=("chat",))
    window.send("go on")
    qtbot.waitUntil(lambda: window.stop_button.isEnabled()
                    and any(e.type == ev.REPLY_TOKEN for e in events))
    window.activateWindow()
    window.stop_button.setFocus()  # as a click or Tab leaves it
    qtbot.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(turn_done(events))
    assert window.chat_view.messages[-1].status == "cut"
    assert "[interrupted]" in window.chat_view.toPlainText()
    assert not window.stop_button.isEnabled()
    assert QApplication.focusWidget() is window.input  # not the conversation search
    close(window)


def test_a_message_sent_as_a_reply_winds_down_stays_in_its_conversation(qtbot, app_data):
    # Each piece takes 0.6 s, and a cancel is seen between pieces: the first reply takes up to
    # that long to wind down once the second message interrupts it.
    slow = FakeChat(*[f"old{i} " for i in range(20)], delay=0.6)
    window, events = open_window(qtbot, Settings(speak_replies=False), Backends(chat=slow),
                                 wait_for=("chat",))
    window.send("first topic")
    qtbot.waitUntil(lambda: any(e.type == ev.REPLY_TOKEN for e in events))
    first = window.controller.conversation_id
    window.send("also this")  # starts once the first reply has wound down
    window.send("and this")  # behind it, in order
    window.new_conversation()  # clicked at once, while it winds down
    qtbot.waitUntil(lambda: not window.controller.pipeline.busy)
    qtbot.wait(200)  # late events delivered
    assert window.chat_view.messages == []  # the new conversation is empty
    users = [t.text for t in window.controller.store.turns(first) if t.role == "user"]
    assert users == ["first topic", "also this", "and this"]
    close(window)


def test_not_ready_yet_is_said_not_silent(qtbot, app_data):
    class NeverLoads(Backends):
        def chat(self, persona, settings):
            time.sleep(1.0)
            raise TalkError("The test persona refuses to load.", code="model_load_failed")

    controller = Controller(Settings(speak_replies=False), backends=NeverLoads())
    window = MainWindow(controller.settings, controller=controller)
    qtbot.addWidget(window)
    window.controller.start()
    window.send("too early")
    assert "still loading" in window.banner.plain_text()
    assert window.input.toPlainText() == ""  # send() was called directly, the box untouched
    qtbot.waitUntil(lambda: controller.states["chat"] == "failed", timeout=30000)
    assert "refuses to load" in window.banner.plain_text()
    qtbot.waitUntil(lambda: controller.states["asr"] in ("ready", "failed"), timeout=60000)
    close(window)


def test_first_run_without_a_persona_then_a_local_folder(qtbot, app_data, tiny_persona_dir,
                                                         monkeypatch):
    import shutil

    from PySide6.QtWidgets import QFileDialog

    import engine.models.availability as availability

    monkeypatch.setattr(availability, "any_persona_ready", lambda: False)
    folder = app_data.parent / "my-model"
    shutil.copytree(tiny_persona_dir, folder)
    (folder / "persona.json").unlink()  # a bare checkout of save_pretrained()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    controller = Controller(Settings(speak_replies=False))
    window = MainWindow(controller.settings, controller=controller)
    qtbot.addWidget(window)
    window.show()
    window.start()
    assert window.stack.currentWidget() is window.first_run
    assert not window.composer.isVisible()
    assert controller.states["chat"] == "off"  # nothing loads until there is a persona
    qtbot.mouseClick(window.first_run.folder_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.states["chat"] == "ready", timeout=60000)
    assert window.stack.currentWidget() is window.chat_view and window.composer.isVisible()
    assert controller.persona.id == "my-model" and window.settings.persona == "my-model"
    assert window.persona_combo.currentData() == "my-model"
    qtbot.waitUntil(lambda: controller.states["asr"] in ("ready", "failed"), timeout=60000)
    close(window)


def test_start_in_hands_free_mode_from_the_settings(qtbot, app_data, tiny_persona_dir, tmp_path):
    mic = FileMicrophone(speech_array(SPOKEN, tmp_path), speed=2.0)
    settings = Settings(persona=str(tiny_persona_dir), speak_replies=False, hands_free=True)
    window, events = open_window(qtbot, settings, Backends(microphone=lambda: mic))
    qtbot.waitUntil(lambda: window.controller.hands_free)
    assert window.hands_free_button.isChecked()
    qtbot.waitUntil(turn_done(events), timeout=60000)
    close(window)


def test_space_keeps_its_meaning_on_other_controls(qtbot, app_data, tmp_path):
    mic = FileMicrophone(speech_array("Hello.", tmp_path), speed=4.0)
    window, events = open_window(qtbot, Settings(speak_replies=False),
                                 Backends(chat=FakeChat("Hi."), microphone=lambda: mic),
                                 wait_for=("chat",))
    window.activateWindow()
    window.hands_free_button.setFocus()
    qtbot.keyClick(window.hands_free_button, Qt.Key.Key_Space)  # Space presses that button
    assert not window.controller.talking
    window.conversations.list.setFocus()
    qtbot.keyPress(window.conversations.list, Qt.Key.Key_Space)
    assert not window.controller.talking
    qtbot.keyRelease(window.conversations.list, Qt.Key.Key_Space)
    window.hands_free_button.setChecked(False)
    close(window)


def test_hands_free_switches_off_when_the_microphone_is_lost(qtbot, app_data, tmp_path):
    from engine.audio.capture import CaptureError

    class DyingMic(FileMicrophone):
        def blocks(self):
            for i, block in enumerate(super().blocks()):
                if i == 5:
                    raise CaptureError("The microphone stopped delivering audio (unplugged?).",
                                       code="device_lost")
                yield block

    mic = DyingMic(speech_array("Hello.", tmp_path), speed=4.0)
    window, events = open_window(qtbot, Settings(speak_replies=False),
                                 Backends(chat=FakeChat("Hi."), microphone=lambda: mic))
    qtbot.mouseClick(window.hands_free_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.controller.hands_free)
    assert "unplugged" in window.banner.plain_text()
    assert not window.hands_free_button.isChecked() and window.talk_button.isEnabled()
    assert window.stage_label.text() == "Ready"
    close(window)


def test_a_new_conversation_mid_reply_does_not_get_the_old_reply(qtbot, app_data):
    slow = FakeChat(*[f"old{i} " for i in range(100)], delay=0.03)
    window, events = open_window(qtbot, Settings(speak_replies=False), Backends(chat=slow),
                                 wait_for=("chat",))
    window.send("first topic")
    qtbot.waitUntil(lambda: any(e.type == ev.REPLY_TOKEN for e in events))
    window.new_conversation()
    qtbot.waitUntil(turn_done(events))
    qtbot.wait(200)  # any late events of the stopped turn have been delivered
    assert window.chat_view.messages == []
    slow.pieces = ("new reply.",)
    window.send("second topic")
    qtbot.waitUntil(turn_done(events, 2))
    assert [m.text for m in window.chat_view.messages] == ["second topic", "new reply."]
    close(window)


def test_a_failed_persona_switch_keeps_the_loaded_one(qtbot, app_data, tmp_path,
                                                      tiny_persona_dir):
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "persona.json").write_text(
        '{"name": "Broken", "base_model": "x", "prompt_format": "dialogpt"}')
    window, events = open_window(qtbot, Settings(persona=str(tiny_persona_dir),
                                                 speak_replies=False), wait_for=("chat",))
    starter = window.controller.persona.id
    window.controller.load_persona(str(bad))
    qtbot.waitUntil(lambda: "Could not switch persona" in window.banner.plain_text(),
                    timeout=60000)
    assert window.controller.persona.id == starter and window.controller.ready
    assert window.persona_combo.currentData() == starter
    window.send("still there?")
    qtbot.waitUntil(turn_done(events), timeout=120000)
    close(window)


def test_settings_apply_without_a_restart(qtbot, app_data, tiny_persona_dir):
    player = FakePlayer(speed=20.0)
    settings = Settings(persona=str(tiny_persona_dir), speak_replies=False)
    window, events = open_window(qtbot, settings,
                                 Backends(voice_output=lambda: (FakeTTS(), player)))
    assert window.controller.states["voice"] == "off" and window.voice_note.isVisible()
    window._settings_saved(settings.replace(speak_replies=True))
    qtbot.waitUntil(lambda: window.controller.states["voice"] == "ready")
    assert not window.voice_note.isVisible()
    window.send("hello")
    qtbot.waitUntil(turn_done(events), timeout=60000)
    assert player.played  # the very next reply is spoken
    window._settings_saved(window.settings.replace(speak_replies=False))
    assert window.controller.states["voice"] == "off" and window.controller.tts is None
    close(window)
    player.close()


def test_voice_preview_needs_the_voice_model_and_says_so(qtbot, app_data):
    window, events = open_window(qtbot, Settings(speak_replies=False),
                                 Backends(chat=FakeChat("Hi.")), wait_for=("chat",))
    with pytest.raises(TalkError) as refused:
        window.controller.preview_voice(None, "Hello there.")
    assert "Spoken replies are off" in refused.value.message
    close(window)


@pytest.mark.audio
def test_voice_preview_plays_through_the_speaker(qtbot, app_data, pulse):
    tts = FakeTTS(seconds=0.3)
    window, events = open_window(qtbot, Settings(),
                                 Backends(chat=FakeChat("Hi."),
                                          voice_output=lambda: (tts, FakePlayer(speed=20.0))),
                                 wait_for=("chat", "voice"))
    started = time.monotonic()
    window.controller.preview_voice(None, "Hello there.")  # blocking: the dialog runs it
    assert tts.received == ["Hello there."] and time.monotonic() - started >= 0.25
    player = window.controller.player
    close(window)
    player.close()


def test_builtin_voices_are_offered_and_an_enrolled_one_without_cloning_says_why(
        qtbot, app_data, pocket_repos, tmp_path, monkeypatch):
    """The tiny pocket-tts model, pulled without its gated cloning weights, as the voice model."""
    import numpy as np
    import soundfile as sf
    from huggingface_hub import constants

    from engine.models import catalogue
    from engine.tts.pocket import PocketTTS
    from engine.voices.store import voices_dir
    from tests.tiny_pocket_tts import install_into_cache

    install_into_cache(pocket_repos, tmp_path / "hf", cloning=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    data = dict(catalogue._load())
    data["tts"] = [{"id": "tiny-tts", "name": "Tiny TTS", "kind": "tts",
                    "config": str(pocket_repos.config), "default_on": ["cpu"], "size_mb": 1}]
    monkeypatch.setattr(catalogue, "_load", lambda: data)
    folder = voices_dir() / "tone"
    folder.mkdir(parents=True)
    sf.write(folder / "sample.wav", np.full(48000, 0.1, np.float32), 24000)
    (folder / "voice.json").write_text('{"name": "Tone", "created": 0, "source": "test"}')
    np.save(folder / "embedding.npy", np.ones(256, np.float32) / 16)
    player = FakePlayer(speed=20.0)
    window, events = open_window(
        qtbot, Settings(voice="Tone"),
        Backends(chat=FakeChat("Hi there."),
                 voice_output=lambda: (PocketTTS("tiny-tts", device="cpu"), player)),
        wait_for=("chat", "voice"))
    labels = [window.voice_combo.itemText(i) for i in range(window.voice_combo.count())]
    assert labels == ["Default voice", "Alba (built-in)", "Marius (built-in)", "Tone"]
    note = window.voice_note.text()
    assert window.voice_note.isVisible() and "Tone needs the voice-cloning weights" in note
    assert "https://huggingface.co/kyutai/pocket-tts" in note and "tiny-tts" in note
    window.send("hello")  # spoken in the default built-in voice instead
    qtbot.waitUntil(turn_done(events), timeout=60000)
    assert player.played == ["Hi there."]
    window.voice_combo.setCurrentIndex(2)
    window.voice_combo.activated.emit(2)
    assert window.settings.voice == "builtin:marius"
    qtbot.waitUntil(lambda: window.controller.states["voice"] == "ready")  # prepared
    assert not window.voice_note.isVisible()
    # Once nothing loads any more, the status line says so (no stale "Preparing...").
    qtbot.waitUntil(lambda: "loading" not in window.controller.states.values(), timeout=60000)
    assert window.stage_label.text() == "Ready"
    assert window.controller.speaking_voice().name == "marius"
    close(window)
    player.close()


def test_choosing_a_persona_switches_to_its_voice_and_a_choice_is_remembered_for_it(
        qtbot, app_data, tiny_persona_dir):
    import json

    import numpy as np
    import soundfile as sf

    from engine.models.persona import load_persona
    from engine.voices.pairing import pair, voice_for
    from engine.voices.store import voices_dir

    for name in ("Grandpa", "Nan"):
        folder = voices_dir() / name.lower()
        folder.mkdir(parents=True)
        sf.write(folder / "sample.wav", np.full(24000, 0.1, np.float32), 24000)
        (folder / "voice.json").write_text(json.dumps({"name": name, "created": 0,
                                                       "source": "t"}))
        np.save(folder / "embedding.npy", np.ones(256, np.float32) / 16)
    persona = load_persona(tiny_persona_dir)
    pair(persona.id, "Grandpa")  # as `voices pair Grandpa <persona>` does
    settings = Settings(persona=str(tiny_persona_dir), speak_replies=False, voice="Nan")
    window, _ = open_window(qtbot, settings, wait_for=("chat",))
    qtbot.waitUntil(lambda: window.voice_combo.currentData() == "Grandpa")  # its voice
    assert window.controller.voice.name == "Grandpa" and window.settings.voice == "Grandpa"
    index = window.voice_combo.findData("Nan")
    window.voice_combo.setCurrentIndex(index)
    window.voice_combo.activated.emit(index)  # chosen while the persona speaks: remembered
    assert voice_for(persona) == "Nan"
    close(window)
    window, _ = open_window(qtbot, settings.replace(voice=None), wait_for=("chat",))
    qtbot.waitUntil(lambda: window.voice_combo.currentData() == "Nan")  # kept over a restart
    close(window)


def test_use_for_persona_in_the_voices_dialog_pairs_and_switches_the_active_persona(
        qtbot, app_data, tiny_persona_dir, monkeypatch):
    import json

    import numpy as np
    import soundfile as sf
    from PySide6.QtWidgets import QInputDialog

    from engine.models.persona import load_persona
    from engine.voices.pairing import voice_for
    from engine.voices.store import voices_dir

    folder = voices_dir() / "grandpa"
    folder.mkdir(parents=True)
    sf.write(folder / "sample.wav", np.full(24000, 0.1, np.float32), 24000)
    (folder / "voice.json").write_text(json.dumps({"name": "Grandpa", "created": 0,
                                                   "source": "t"}))
    np.save(folder / "embedding.npy", np.ones(256, np.float32) / 16)
    persona = load_persona(tiny_persona_dir)
    settings = Settings(persona=str(tiny_persona_dir), speak_replies=False, voice=None)
    window, _ = open_window(qtbot, settings, wait_for=("chat",))
    window.open_voices()
    dialog = window.voices_dialog
    assert dialog.current_persona.id == persona.id
    asked = {}

    def choose(parent, title, label, items, current, editable):
        asked.update(items=items, current=current, label=label)
        return items[current], True  # the persona speaking now is offered first

    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(choose))
    dialog.select_voice("Grandpa")
    assert dialog.pair_button.isEnabled()
    dialog.pair_button.click()
    assert "speak in Grandpa" in asked["label"]
    assert asked["items"][asked["current"]].startswith(persona.label)
    assert voice_for(persona) == "Grandpa"
    assert "now speaks in Grandpa" in dialog.banner.text()
    assert window.voice_combo.currentData() == "Grandpa"  # the active persona follows at once
    assert window.controller.voice.name == "Grandpa" and window.settings.voice == "Grandpa"
    dialog.close()
    close(window)


def test_choosing_a_persona_that_broke_since_listing_keeps_the_current_one(
        qtbot, app_data, tiny_persona_dir):
    import shutil

    from engine import paths

    other = paths.personas_dir() / "other"
    shutil.copytree(tiny_persona_dir, other)
    window, events = open_window(qtbot, Settings(persona=str(tiny_persona_dir),
                                                 speak_replies=False), wait_for=("chat",))
    current = window.controller.persona.id
    index = window.persona_combo.findData("other")
    assert index >= 0
    (other / "persona.json").write_text("{damaged")  # broken after the list was made
    window.persona_combo.setCurrentIndex(index)
    window.persona_combo.activated.emit(index)
    assert "Could not switch persona" in window.banner.plain_text()
    assert window.controller.persona.id == current and window.controller.ready
    assert window.controller.states["chat"] == "ready"
    assert window.persona_combo.currentData() == current  # the selector shows who answers
    assert window.stage_label.text() == "Ready"
    window.send("still there?")
    qtbot.waitUntil(turn_done(events), timeout=60000)
    close(window)


def test_ctrl_comma_opens_the_settings(qtbot, app_data, tiny_persona_dir, monkeypatch):
    from PySide6.QtGui import QKeySequence

    window, _ = open_window(qtbot, Settings(persona=str(tiny_persona_dir), speak_replies=False),
                            wait_for=("chat",))
    assert QKeySequence("Ctrl+,") in window.settings_action.shortcuts()
    opened = []
    monkeypatch.setattr(window, "open_settings", lambda: opened.append(1))
    window.settings_action.triggered.disconnect()
    window.settings_action.triggered.connect(window.open_settings)
    window.activateWindow()
    window.chat_view.setFocus()
    qtbot.keyClick(window.chat_view, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    assert opened == [1]
    close(window)


def test_a_failed_reply_clears_once_a_turn_goes_through_and_the_status_says_where(
        qtbot, app_data, tiny_persona_dir):
    chat = FakeChat("Hi", " there.", fail_after=0)
    window, events = open_window(qtbot, Settings(persona=str(tiny_persona_dir),
                                                 speak_replies=False),
                                 Backends(chat=chat), wait_for=("chat",))
    assert window.backend_label.text() == "Tiny DialoGPT"  # a fake backend runs nowhere
    window.send("are you there?")
    qtbot.waitUntil(lambda: "the model fell over" in window.banner.plain_text(), timeout=30000)
    assert window.chat_view.messages[-1].status == "failed"  # shown as "(no reply)"
    chat.fail_after = None
    window.send("and now?")
    qtbot.waitUntil(turn_done(events), timeout=30000)
    assert window.banner.plain_text() == ""  # its cause is gone
    close(window)


def test_a_speech_recognition_error_clears_when_switched_back(qtbot, app_data,
                                                                tiny_persona_dir):
    settings = Settings(persona=str(tiny_persona_dir), speak_replies=False)
    window, _ = open_window(qtbot, settings)
    window._settings_saved(window.settings.replace(asr_model="small"))  # not downloaded here
    qtbot.waitUntil(lambda: "'small' is not downloaded" in window.banner.plain_text(),
                    timeout=60000)
    window._settings_saved(window.settings.replace(asr_model="bundled"))
    qtbot.waitUntil(lambda: window.controller.states["asr"] == "ready", timeout=60000)
    assert window.banner.plain_text() == ""
    assert window.stage_label.text() == "Ready"
    close(window)


def test_a_missing_voice_model_is_named_for_people_and_said_once(qtbot, app_data,
                                                                  tiny_persona_dir, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # nothing pulled
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    window, _ = open_window(qtbot, Settings(persona=str(tiny_persona_dir), speak_replies=True,
                                            tts_model="pocket-tts-7m"), wait_for=("chat",))
    qtbot.waitUntil(lambda: window.controller.states["voice"] == "failed", timeout=60000)
    note = window.voice_note.text()
    assert note.lower().count("text only") == 1, note
    assert "Pocket TTS English 7M" in note and "pocket-tts-7m" not in note
    assert "Models (Ctrl+M)" in note and "talk-to-transformers" not in note
    close(window)


def test_the_persona_selector_shows_the_starters_whole_name(qtbot, app_data, tiny_persona_dir):
    from PySide6.QtGui import QFontMetrics

    # The starter is listed whichever persona loads; the tiny one keeps the test fast.
    window, _ = open_window(qtbot, Settings(persona=str(tiny_persona_dir), speak_replies=False),
                            wait_for=("chat",))
    index = window.persona_combo.findData("starter")
    assert index >= 0
    label = window.persona_combo.itemText(index)
    assert label == "Starter (SmolLM2-135M-Instruct)"
    needed = QFontMetrics(window.persona_combo.font()).horizontalAdvance(label)
    window.persona_combo.setCurrentIndex(index)
    qtbot.wait(50)  # laid out as shown
    print("combo", window.persona_combo.width(), "text", needed, "window", window.width())
    assert window.persona_combo.width() > needed + 20  # not cut ("…-Instru"), arrow beside
    close(window)


def test_a_stored_reply_shows_its_personas_name_from_the_start(qtbot, app_data):
    from engine.paths import conversations_db

    store = ConversationStore(conversations_db())
    conversation = store.new_conversation("starter")
    store.add_turn(conversation, "user", "tell me a story", "starter")
    store.add_turn(conversation, "assistant", "Once upon a", "starter", status="cut")
    store.close()

    class SlowChat(Backends):
        def chat(self, persona, settings):
            time.sleep(1.5)
            return FakeChat("Hi.")

    controller = Controller(Settings(speak_replies=False), backends=SlowChat())
    window = MainWindow(controller.settings, controller=controller)
    qtbot.addWidget(window)
    window.controller.start()
    window._show_conversation(conversation)  # as the list shows it while the persona loads
    assert controller.states["chat"] == "loading"
    text = window.chat_view.toPlainText()
    assert "Starter (SmolLM2-135M-Instruct) ·" in text and "Assistant ·" not in text
    assert "[interrupted]" in text
    qtbot.waitUntil(lambda: controller.states["chat"] == "ready", timeout=30000)
    close(window)


def test_a_still_loading_message_clears_once_the_persona_is_ready(qtbot, app_data,
                                                                  tiny_persona_dir):
    class SlowChat(Backends):
        def chat(self, persona, settings):
            time.sleep(1.0)
            return FakeChat("Hi.")

    controller = Controller(Settings(persona=str(tiny_persona_dir), speak_replies=False),
                            backends=SlowChat())
    window = MainWindow(controller.settings, controller=controller)
    qtbot.addWidget(window)
    window.controller.start()
    window.send("too early")
    assert "The persona is still loading" in window.banner.plain_text()
    qtbot.waitUntil(lambda: controller.states["chat"] == "ready", timeout=30000)
    assert window.banner.plain_text() == ""  # it is ready: the message no longer applies
    close(window)


def test_clicking_into_the_text_box_while_holding_space_still_ends_the_recording(
        qtbot, app_data, tiny_persona_dir, tmp_path):
    mic = FileMicrophone(speech_array("Hello there.", tmp_path), speed=4.0)
    window, events = open_window(qtbot, Settings(persona=str(tiny_persona_dir),
                                                 speak_replies=False),
                                 Backends(microphone=lambda: mic))
    window.activateWindow()
    window.chat_view.setFocus()
    qtbot.keyPress(window.chat_view, Qt.Key.Key_Space)
    assert window.controller.talking
    window.input.setFocus()  # the person clicks into the text box, Space still held
    qtbot.keyRelease(window.input, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: not window.controller.talking, timeout=1000)
    assert window.input.toPlainText() == ""  # the release was the talk key's, not typing
    qtbot.waitUntil(turn_done(events), timeout=60000)
    close(window)


def test_settings_saved_keep_a_voice_chosen_in_the_window_while_the_dialog_was_open(
        qtbot, app_data, tiny_persona_dir, monkeypatch):
    from engine import settings as settings_file

    window, _ = open_window(qtbot, Settings(persona=str(tiny_persona_dir), speak_replies=False),
                            wait_for=("chat",))
    window.open_settings()
    dialog = window.settings_dialog
    # While the dialog is open, the person picks a voice in the window.
    window.controller.save_settings(window.settings.replace(voice="builtin:marius"))
    dialog.sensitivity_slider.setValue(3 if window.settings.sensitivity != 3 else 1)
    dialog.accept()  # saves what the dialog shows: its copy predates the voice
    assert window.settings.voice == "builtin:marius"  # kept
    assert window.settings.sensitivity == dialog.sensitivity_slider.value()  # applied
    on_disk, _ = settings_file.load()
    assert on_disk.voice == "builtin:marius" and on_disk.sensitivity == window.settings.sensitivity
    close(window)
