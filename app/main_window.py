"""The main window: conversations, the chat, the talk button, status; renders the controller.

It never runs engine work itself: the controller loads and runs things in the background and
reports through signals, which this window turns into widget changes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.controller import FAILED, LOADING, READY, Controller
from app.talk_key import TalkKey
from app.turn_view import TurnView
from app.widgets.banner import Banner
from app.widgets.chat_view import ChatView
from app.widgets.conversation_list import ConversationList
from app.widgets.level_meter import LevelMeter
from engine.errors import TalkError
from engine.settings import Settings

TALK_TEXT = "Hold to talk  (Space)"


class MessageBox(QPlainTextEdit):
    """The typing box: Enter sends, Shift+Enter starts a new line."""

    submitted = Signal(str)

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Qt: Enter sends unless Shift is held."""
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.submitted.emit(self.toPlainText())
            return
        super().keyPressEvent(event)


class MainWindow(QMainWindow):
    """The app's window."""

    def __init__(self, settings: Settings, *, controller: Controller | None = None,
                 settings_warning: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Talk To Transformers")
        self.resize(1000, 700)
        self.controller = controller or Controller(settings, parent=self)
        self._build()
        self.turn_view = TurnView(
            self.controller, chat_view=self.chat_view, stage_label=self.stage_label,
            timings_label=self.timings_label, stop_button=self.stop_button, banner=self.banner,
            level_meter=self.level_meter, focus_after_stop=self.input, parent=self)
        self._connect()
        self._hands_free_started = False
        self.talk_key = TalkKey(self, applies=self._space_means_talk, on_press=self._talk_key_down,
                                on_release=self._talk_key_up)
        self.refresh_conversations()
        self._show_conversation(self.controller.conversation_id)
        self.refresh_personas()
        self.refresh_voices()
        if settings_warning:
            self.banner.show_message(settings_warning, "warning", "Settings")

    @property
    def settings(self) -> Settings:
        """The settings in use (the controller owns them)."""
        return self.controller.settings

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.conversations = ConversationList(self)
        self.persona_combo = QComboBox(self)
        self.persona_combo.setAccessibleName("Persona")
        self.persona_combo.setMinimumContentsLength(22)
        self.voice_combo = QComboBox(self)
        self.voice_combo.setAccessibleName("Voice")
        self.voice_combo.setMinimumContentsLength(16)
        for combo in (self.persona_combo, self.voice_combo):
            combo.setMaximumWidth(380)  # a longer name is elided; its tooltip says it whole
        persona_label = QLabel("&Persona:", self)
        persona_label.setBuddy(self.persona_combo)
        voice_label = QLabel("&Voice:", self)
        voice_label.setBuddy(self.voice_combo)
        self.models_button = QPushButton("&Models…", self)
        self.voices_button = QPushButton("Voi&ces…", self)
        self.settings_button = QPushButton("&Settings…", self)
        top = QHBoxLayout()
        top.addWidget(persona_label)
        top.addWidget(self.persona_combo)
        top.addWidget(voice_label)
        top.addWidget(self.voice_combo)
        top.addStretch(1)
        for button in (self.models_button, self.voices_button, self.settings_button):
            top.addWidget(button)

        self.banner = Banner(self)
        self.voice_note = QLabel(self)  # why replies are (not) spoken
        self.voice_note.setWordWrap(True)
        self.voice_note.setForegroundRole(self.voice_note.foregroundRole())
        self.chat_view = ChatView(self)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.chat_view)
        self.first_run: Any = None
        self.models_dialog: Any = None
        self.voices_dialog: Any = None
        self.settings_dialog: Any = None
        self.training_dialog: Any = None

        self.input = MessageBox(self)
        self.input.setPlaceholderText("Type a message — Enter sends, Shift+Enter for a new line")
        self.input.setAccessibleName("Message")
        self.input.setMaximumHeight(80)
        self.send_button = QPushButton("S&end", self)
        input_row = QHBoxLayout()
        input_row.addWidget(self.input, 1)
        input_row.addWidget(self.send_button)

        self.talk_button = QPushButton(TALK_TEXT, self)
        self.talk_button.setIcon(_icon("microphone"))
        self.talk_button.setIconSize(QSize(28, 28))
        self.talk_button.setMinimumHeight(52)
        self.talk_button.setAccessibleName("Hold to talk")
        self.talk_button.setToolTip("Press and hold while you speak; release to send. "
                                    "Space does the same when you are not typing.")
        font = self.talk_button.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        font.setBold(True)
        self.talk_button.setFont(font)
        self.hands_free_button = QPushButton("&Hands-free", self)
        self.hands_free_button.setCheckable(True)
        self.hands_free_button.setToolTip("Listen continuously; the voice detector hears when "
                                          "you stop talking.")
        self.stop_button = QPushButton("S&top", self)
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.setEnabled(False)
        self.level_meter = LevelMeter(self)
        controls = QHBoxLayout()
        controls.addWidget(self.talk_button, 2)
        controls.addWidget(self.hands_free_button)
        controls.addWidget(self.stop_button)
        meter_box = QVBoxLayout()
        meter_label = QLabel("Mic", self)
        meter_box.addWidget(meter_label)
        meter_box.addWidget(self.level_meter)
        controls.addLayout(meter_box, 1)

        self.composer = QWidget(self)  # hidden while there is no persona to talk to
        composer = QVBoxLayout(self.composer)
        composer.setContentsMargins(0, 0, 0, 0)
        composer.addLayout(input_row)
        composer.addLayout(controls)
        right = QWidget(self)
        column = QVBoxLayout(right)
        column.addLayout(top)
        column.addWidget(self.banner)
        column.addWidget(self.voice_note)
        column.addWidget(self.stack, 1)
        column.addWidget(self.composer)
        splitter = QSplitter(self)
        splitter.addWidget(self.conversations)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([240, 760])
        self.setCentralWidget(splitter)

        self.stage_label = QLabel("Starting…", self)
        self.timings_label = QLabel("", self)
        self.load_progress = QProgressBar(self)
        self.load_progress.setRange(0, 0)  # busy: model loading has no byte count
        self.load_progress.setMaximumWidth(160)
        self.load_progress.hide()
        self.statusBar().addWidget(self.stage_label, 1)
        self.backend_label = QLabel(self)  # where the persona runs: CPU, GPU or a server
        self.backend_label.setAccessibleName("Where the persona runs")
        self.statusBar().addPermanentWidget(self.backend_label)
        self.statusBar().addPermanentWidget(self.timings_label)
        self.statusBar().addPermanentWidget(self.load_progress)
        self._build_menus()
        self.setTabOrder(self.input, self.send_button)
        self.setTabOrder(self.send_button, self.talk_button)

    def _build_menus(self) -> None:
        def action(menu, text: str, slot, shortcut: Any = None) -> QAction:
            act = QAction(text, self)
            if isinstance(shortcut, list):
                act.setShortcuts([QKeySequence(k) for k in shortcut])
            elif shortcut is not None:
                act.setShortcut(QKeySequence(shortcut))
            act.triggered.connect(slot)
            menu.addAction(act)
            return act

        bar = self.menuBar()
        conversation = bar.addMenu("&Conversation")
        action(conversation, "&New conversation", self.new_conversation,
               QKeySequence.StandardKey.New)
        action(conversation, "&Find…", self.conversations.search_edit.setFocus,
               QKeySequence.StandardKey.Find)
        action(conversation, "&Stop reply", self.controller.stop_speaking, "Esc")
        conversation.addSeparator()
        action(conversation, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        tools = bar.addMenu("&Tools")
        action(tools, "&Models and personas…", self.open_models, "Ctrl+M")
        action(tools, "&Voices…", self.open_voices, "Ctrl+Shift+V")
        action(tools, "&Train a persona…", self.open_training, "Ctrl+T")
        # Ctrl+, explicitly: the platform's "Preferences" key is no key on many Linux desktops.
        self.settings_action = action(tools, "&Settings…", self.open_settings, ["Ctrl+,"] + [
            k for k in QKeySequence.keyBindings(QKeySequence.StandardKey.Preferences)
            if k.toString() != "Ctrl+,"])
        help_menu = bar.addMenu("&Help")
        action(help_menu, "&Keyboard shortcuts", self._show_shortcuts)

    def _connect(self) -> None:
        c = self.controller
        c.pipeline_event.connect(self.turn_view.on_event)
        c.error.connect(self._on_error)
        c.settings_error.connect(self._on_settings_error)
        c.part_state.connect(self._on_part_state)
        c.session_ready.connect(self._on_session_ready)
        c.conversations_changed.connect(self.refresh_conversations)
        c.hands_free_changed.connect(self._show_hands_free)
        self.conversations.selected.connect(self._open_conversation)
        self.conversations.new_requested.connect(self.new_conversation)
        self.conversations.rename_requested.connect(self._rename_conversation)
        self.conversations.delete_requested.connect(self._delete_conversation)
        self.conversations.search_changed.connect(lambda _text: self.refresh_conversations())
        self.input.submitted.connect(self.send)
        self.send_button.clicked.connect(lambda: self.send(self.input.toPlainText()))
        self.talk_button.pressed.connect(self.press_talk)
        self.talk_button.released.connect(self.release_talk)
        self.hands_free_button.toggled.connect(self._toggle_hands_free)
        self.stop_button.clicked.connect(c.stop_speaking)
        self.persona_combo.activated.connect(self._persona_chosen)
        self.voice_combo.activated.connect(self._voice_chosen)
        self.models_button.clicked.connect(self.open_models)
        self.voices_button.clicked.connect(self.open_voices)
        self.settings_button.clicked.connect(self.open_settings)

    # -- start --------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin loading the models (call once the window is on screen)."""
        from engine.models.availability import any_persona_ready

        if not any_persona_ready():
            self._show_first_run()
            return
        self.controller.start()

    def _show_first_run(self) -> None:
        from app.first_run import FirstRunPage

        if self.first_run is None:
            self.first_run = FirstRunPage(self.controller.workers, self)
            self.first_run.persona_ready.connect(self._first_persona_ready)
            self.stack.addWidget(self.first_run)
        self.stack.setCurrentWidget(self.first_run)
        self.composer.hide()
        self.stage_label.setText("No persona model yet: download one or pick a folder.")

    def _first_persona_ready(self, persona_id: str) -> None:
        self.stack.setCurrentWidget(self.chat_view)
        self.composer.show()
        self.controller.save_settings(self.settings.replace(persona=persona_id))
        self.refresh_personas()
        self.controller.start()

    # -- lists --------------------------------------------------------------------------------
    def refresh_conversations(self) -> None:
        """Reload the conversation list (filtered by the search box)."""
        if self.controller.closed:
            return
        found = self.controller.list_conversations(self.conversations.search_edit.text().strip())
        self.conversations.set_conversations(found, self.controller.conversation_id)

    def refresh_personas(self) -> None:
        """Reload the persona selector."""
        from engine.models.registry import list_personas

        personas, _problems = list_personas()
        current = self.controller.persona.id if self.controller.persona else self.settings.persona
        loaded = self.controller.persona
        if loaded is not None and all(p.id != loaded.id for p in personas):
            personas.append(loaded)  # opened from a folder that is not installed
        self.persona_combo.clear()
        for persona in personas:
            self.persona_combo.addItem(persona.label, persona.id)
            self.persona_combo.setItemData(self.persona_combo.count() - 1, persona.label,
                                           Qt.ItemDataRole.ToolTipRole)
        _fit_names(self.persona_combo)
        index = self.persona_combo.findData(current)
        if index >= 0:
            self.persona_combo.setCurrentIndex(index)

    def refresh_voices(self) -> None:
        """Reload the voice selector."""
        from engine.tts.builtin import pulled_builtin_voices
        from engine.voices.store import list_voices

        voices, _problems = list_voices()
        self.voice_combo.clear()
        self.voice_combo.addItem("Default voice", None)
        # Built-in voices of every pulled voice model; they speak without the cloning weights.
        for builtin in pulled_builtin_voices():
            self.voice_combo.addItem(builtin.label, builtin.ref)
        for voice in voices:
            self.voice_combo.addItem(voice.name + (" (flagged)" if voice.flagged else ""),
                                     voice.name)
        _fit_names(self.voice_combo)
        index = self.voice_combo.findData(self.settings.voice)
        self.voice_combo.setCurrentIndex(max(0, index))
        if self.settings.voice and index < 0:  # the saved voice was deleted or renamed
            self.controller.save_settings(self.settings.replace(voice=None))
        self.controller.set_voice(self.voice_combo.currentData())

    # -- conversations ------------------------------------------------------------------------
    def _show_conversation(self, conversation_id: int | None) -> None:
        self.turn_view.forget_turn()
        messages = []
        if conversation_id is not None:
            try:
                messages = self.controller.conversation_messages(conversation_id)
            except TalkError as err:
                self.banner.show_message(err, "error", "Conversations")
        self.chat_view.set_messages(messages)

    def _open_conversation(self, conversation_id: int) -> None:
        if conversation_id == self.controller.conversation_id:
            return
        self.controller.open_conversation(conversation_id)
        self._show_conversation(conversation_id)

    def new_conversation(self) -> None:
        """Start a new conversation."""
        try:
            self.controller.new_conversation()
        except TalkError as err:
            self.banner.show_message(err, "error", "Conversations")
            return
        self.turn_view.forget_turn()
        self.chat_view.clear_messages()
        self.refresh_conversations()
        self.input.setFocus()

    def _rename_conversation(self, conversation_id: int) -> None:
        current = self.controller.title_suggestion(conversation_id)
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:",
                                         QLineEdit.EchoMode.Normal, current)
        if ok and title.strip():
            try:
                self.controller.rename_conversation(conversation_id, title)
            except TalkError as err:
                self.banner.show_message(err, "error", "Conversations")
            self.refresh_conversations()

    def _delete_conversation(self, conversation_id: int) -> None:
        answer = QMessageBox.question(self, "Delete conversation",
                                      "Delete this conversation and all its turns?")
        if answer != QMessageBox.StandardButton.Yes:
            return
        was_open = conversation_id == self.controller.conversation_id
        try:
            self.controller.delete_conversation(conversation_id)
        except TalkError as err:
            self.banner.show_message(err, "error", "Conversations")
            return
        if was_open:  # the controller opened the latest other conversation (or a new one)
            self._show_conversation(self.controller.conversation_id)
        self.refresh_conversations()

    # -- turns --------------------------------------------------------------------------------
    def send(self, text: str) -> None:
        """Send the typed message; the box keeps it if it could not be sent."""
        if not text.strip():
            return
        if self.controller.send_text(text):
            self.input.clear()

    def press_talk(self) -> None:
        """Talk button or Space went down."""
        if self.controller.press_talk():
            self.talk_button.setText("Listening… release to send")
            self.talk_button.setIcon(_icon("recording"))

    def _reset_talk_button(self) -> None:
        self.talk_button.setText(TALK_TEXT)
        self.talk_button.setIcon(_icon("microphone"))

    def release_talk(self, released_at: float | None = None) -> None:
        """Talk button or Space came up (at ``released_at``, a perf_counter(); None: now)."""
        self._reset_talk_button()
        if self.controller.talking:
            self.controller.release_talk(released_at)
            self.stage_label.setText("Transcribing…")
        self.level_meter.reset()

    def _toggle_hands_free(self, on: bool) -> None:
        active = self.controller.set_hands_free(on)
        if active != on:
            self._show_hands_free(active)

    def _show_hands_free(self, on: bool) -> None:
        """Reflect the controller's hands-free state (it may stop on its own: mic lost)."""
        self.hands_free_button.blockSignals(True)
        self.hands_free_button.setChecked(on)
        self.hands_free_button.blockSignals(False)
        self.talk_button.setEnabled(not on)
        if not on:
            self.level_meter.reset()
            self.turn_view.set_idle_stage()

    def _on_error(self, where: str, err: TalkError) -> None:
        # What the message is about, so it clears once that works: "not ready yet" messages
        # belong to the part that is loading, whichever action met them.
        topic = {"not_ready": "chat", "asr_not_ready": "asr"}.get(err.code or "") or {
            "Chat model": "chat", "Persona": "chat", "Speech recognition": "asr",
            "Voice": "voice", "Microphone": "talk", "Talk": "talk",
            "Hands-free": "talk"}.get(where)
        self.banner.show_message(err, "error", where, topic=topic)
        if where in ("Microphone", "Talk", "Hands-free"):
            self.level_meter.reset()
            self._reset_talk_button()

    def _on_settings_error(self, err: TalkError) -> None:
        self.banner.show_message(err, "error", "Settings")

    def _on_part_state(self, part: str, state: str, text: str) -> None:
        if state in (READY, "off"):  # it works again (or is not wanted): its error is stale
            self.banner.clear(part)
        loading = [p for p, s in self.controller.states.items() if s == LOADING]
        self.load_progress.setVisible(bool(loading))
        if part == "voice":
            self.voice_note.setText(text)
            # Ready needs no note, unless the chosen voice cannot be cloned (it says why).
            self.voice_note.setVisible(state != READY or self.controller.voice_substituted)
        if state == LOADING:
            self.stage_label.setText(text)
        elif state == READY and part == "chat":
            self.stage_label.setText("Ready")
            persona = self.controller.persona
            where = self.controller.where_text()
            self.backend_label.setText(f"{persona.label} · {where}" if where else persona.label)
            self.backend_label.setToolTip(f"{persona.label} answers, running on {where}."
                                          if where else "")
            self.chat_view.assistant_name = persona.label
            self.refresh_personas()
            self._use_persona_voice(persona)
            if self.settings.persona != persona.id and self.settings.persona in (
                    self.persona_combo.itemData(i) for i in range(self.persona_combo.count())):
                self.controller.save_settings(self.settings.replace(persona=persona.id))
        elif state == FAILED and part == "chat":
            self.stage_label.setText("No persona loaded — see the message above.")
        if not loading and self.stage_label.text().startswith(("Load", "Preparing")):
            # Nothing loads any more: never leave "Loading…" standing without the busy bar.
            self.stage_label.setText(
                "Ready" if self.controller.ready else
                "No persona loaded — see the message above."
                if self.controller.states["chat"] == FAILED else "Not ready")
        if (self.settings.hands_free and not self._hands_free_started and self.controller.ready
                and self.controller.states["asr"] == READY):
            self._hands_free_started = True  # once per launch: the person may turn it off
            self.hands_free_button.setChecked(True)

    def _on_session_ready(self, conversation_id: int) -> None:
        if self.controller.closed:
            return
        self.refresh_conversations()
        if not self.chat_view.messages:
            self._show_conversation(conversation_id)

    # -- persona and voice --------------------------------------------------------------------
    def _persona_chosen(self, index: int) -> None:
        persona_id = self.persona_combo.itemData(index)
        if persona_id and (self.controller.persona is None
                           or persona_id != self.controller.persona.id
                           or self.controller.states["chat"] == FAILED):
            self.controller.load_persona(persona_id)  # saved in the settings once it loads

    def _use_persona_voice(self, persona: Any) -> None:
        """Switch the voice selector to the voice the persona speaks in, if it has one."""
        from engine.voices.pairing import voice_for

        ref = voice_for(persona)
        index = self.voice_combo.findData(ref) if ref else -1
        if index < 0 or index == self.voice_combo.currentIndex():
            return  # no voice of its own (or it is gone): keep the one chosen
        self.voice_combo.setCurrentIndex(index)
        self.controller.set_voice(ref)
        self.controller.save_settings(self.settings.replace(voice=ref))

    def _persona_paired(self, persona_id: str) -> None:
        """A persona was given a voice elsewhere: follow it if that persona is speaking now."""
        if self.controller.persona is not None and self.controller.persona.id == persona_id:
            self._use_persona_voice(self.controller.persona)

    def _voice_chosen(self, index: int) -> None:
        name = self.voice_combo.itemData(index)
        self.controller.set_voice(name)
        self.controller.save_settings(self.settings.replace(voice=name))
        if self.controller.persona is not None:  # remembered for the persona speaking now
            from engine.voices.pairing import pair

            pair(self.controller.persona.id, name)

    # -- dialogs ------------------------------------------------------------------------------
    def open_models(self) -> None:
        """Show the models and personas dialog."""
        from app.dialogs.models_dialog import ModelsDialog

        # One instance, kept: its workers' callbacks may arrive after it is closed.
        if self.models_dialog is None:
            self.models_dialog = ModelsDialog(self.controller.workers, self)
            self.models_dialog.personas_changed.connect(self._models_changed)
        else:
            self.models_dialog.refresh()
        self.models_dialog.show()
        self.models_dialog.raise_()

    def _models_changed(self) -> None:
        self.refresh_personas()
        self.refresh_voices()  # an imported persona may have brought its voice
        # The voice model may just have been pulled: try it again.
        if self.settings.speak_replies and self.controller.states["voice"] == FAILED:
            self.controller.load_voice_output()
        if self.controller.states["asr"] == FAILED:  # a Whisper size may just have been pulled
            self.controller.load_recognizer()

    def open_voices(self) -> None:
        """Show the voices dialog."""
        from app.dialogs.voices_dialog import VoicesDialog

        if self.voices_dialog is None:
            self.voices_dialog = VoicesDialog(
                self.controller.workers,
                microphone_factory=lambda: self.controller.backends.microphone(
                    self.controller.settings),
                preview=self.controller.preview_voice, prepare=self.controller.prepare_voice,
                play=self.controller.play_sample,
                parent=self)
            self.voices_dialog.voices_changed.connect(self.refresh_voices)
            self.voices_dialog.paired.connect(self._persona_paired)
        else:
            self.voices_dialog.refresh()
        self.voices_dialog.current_persona = self.controller.persona
        self.voices_dialog.show()
        self.voices_dialog.raise_()

    def open_training(self) -> None:
        """Show the training dialog (one, kept: a run may go on while it is hidden)."""
        from app.dialogs.training_dialog import TrainingDialog

        if self.training_dialog is None:
            self.training_dialog = TrainingDialog(self)
            self.training_dialog.persona_created.connect(lambda _id: self.refresh_personas())
        self.training_dialog.show()
        self.training_dialog.raise_()

    def open_settings(self) -> None:
        """Show the settings dialog; saved settings apply at once."""
        from app.dialogs.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self.controller.workers, parent=self)
        opened_with = self.settings
        dialog.settings_saved.connect(lambda chosen: self._settings_saved(chosen, opened_with))
        dialog.open()  # not deleted on close: its workers' callbacks may still arrive
        self.settings_dialog = dialog

    def _settings_saved(self, settings: Settings, opened_with: Settings | None = None) -> None:
        """Apply what the person changed in Settings (``opened_with``: what it showed).

        Only the fields changed in the dialog are taken: a persona or voice chosen in the
        window while the dialog was open stays (the dialog's copy was made before it).
        """
        if opened_with is not None:
            changed = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
                       if getattr(settings, f.name) != getattr(opened_with, f.name)}
            settings = self.controller.settings.replace(**changed)
            self.controller.apply_settings(settings)
            self.controller.save_settings(settings)  # over the dialog's write of its copy
            return
        self.controller.apply_settings(settings)

    def _show_shortcuts(self) -> None:
        QMessageBox.information(self, "Keyboard shortcuts", (
            "Space (when not typing) — hold to talk\n"
            "Enter — send · Shift+Enter — new line\n"
            "Esc — stop the reply\n"
            "Ctrl+N — new conversation · Ctrl+F — search\n"
            "Ctrl+M — models · Ctrl+Shift+V — voices · Ctrl+T — train a persona\n"
            "Ctrl+, — settings\n"
            "Ctrl+Q — quit"))

    # -- hold-to-talk key ---------------------------------------------------------------------
    def _space_means_talk(self) -> bool:
        """Whether Space is the talk key now (only while the chat is shown).

        Not in the text box, not on another button, list or selector: Space presses or selects
        those.
        """
        focus = QApplication.focusWidget()
        return focus in (None, self, self.chat_view, self.talk_button) and (
            self.stack.currentWidget() is self.chat_view)

    def _talk_key_down(self) -> None:
        self.talk_button.setDown(True)
        self.press_talk()

    def _talk_key_up(self, released_at: float) -> None:
        self.talk_button.setDown(False)
        self.release_talk(released_at)

    # -- closing ------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        """Stop listening, stop the reply (kept as cut), wait for every thread."""
        self.talk_key.detach()
        if self.training_dialog is not None:
            self.training_dialog.close()  # the trainer stops at a checkpoint
        self.hide()
        self.controller.shutdown()
        event.accept()


def _fit_names(combo: QComboBox) -> None:
    """Make ``combo`` wide enough for its longest name plus its arrow (up to its maximum).

    Qt sizes a combo box from its text but the style then draws the arrow inside that width,
    which cut "Starter (SmolLM2-135M-Instruct)" to "…-Instru".
    """
    metrics = combo.fontMetrics()
    longest = max((metrics.horizontalAdvance(combo.itemText(i)) for i in range(combo.count())),
                  default=0)
    combo.setMinimumWidth(min(combo.maximumWidth(), longest + 48))


def _icon(name: str) -> QIcon:
    from engine import paths

    return QIcon(str(paths.resources_dir() / "icons" / f"{name}.svg"))


def schedule(fn, delay_ms: int = 0) -> None:
    """Run ``fn`` on the GUI thread after the current event (used to start after showing)."""
    QTimer.singleShot(delay_ms, fn)
