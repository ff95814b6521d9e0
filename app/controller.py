"""The window's link to the engine: loads the parts in the background and runs the turns.

No widget lives here. Everything the engine reports reaches the window as Qt signals, which
arrive on the GUI thread whatever thread emitted them (the pipeline's turn thread, the
microphone's, a worker's). The window only renders those signals and calls the methods below.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.backends import EngineBackends
from app.widgets.chat_view import Message
from app.workers import WorkerPool
from engine import paths
from engine.errors import TalkError
from engine.pipeline import events as ev
from engine.pipeline.events import Event
from engine.settings import Settings
from engine.store import Conversation, ConversationStore

# Part states, as shown in the window.
LOADING, READY, FAILED, OFF = "loading", "ready", "failed", "off"


class Controller(QObject):
    """Owns the chat session, the voice pipeline, the microphone and their loading."""

    # An engine Event from the pipeline (turn stages, levels). Not called "event": that would
    # shadow QObject.event(QEvent), Qt's own event handler.
    pipeline_event = Signal(object)
    error = Signal(str, object)  # (where, TalkError): shown as a banner
    part_state = Signal(str, str, str)  # (part: chat/asr/voice, state, text for people)
    session_ready = Signal(int)  # a conversation is open and the chat model loaded: its id
    conversations_changed = Signal()  # a turn was stored or a conversation added
    hands_free_changed = Signal(bool)  # hands-free listening turned on or off (or failed)
    settings_error = Signal(object)  # TalkError: the settings file could not be written
    _hands_free_failed = Signal(object)  # from the listening thread, to the GUI thread

    def __init__(self, settings: Settings, *, backends: EngineBackends | None = None,
                 workers: WorkerPool | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.settings = settings
        self.backends = backends or EngineBackends()
        self.workers = workers or WorkerPool(self)
        # Two connections to one WAL database: the pipeline writes from its turn thread, the
        # window reads lists and history here; SQLite lets readers and a writer run together.
        self.store = ConversationStore(paths.conversations_db())
        self._session_store = ConversationStore(paths.conversations_db())
        self.persona: Any = None
        self.session: Any = None
        self.pipeline: Any = None
        self.recognizer: Any = None
        self.tts: Any = None
        self.player: Any = None
        self.voice: Any = None
        self.states = {"chat": OFF, "asr": OFF, "voice": OFF}
        self.conversation_id: int | None = self.store.latest_conversation()
        self._ptt: Any = None
        # Messages sent while a reply winds down, started one after another, in order, on a
        # thread of their own (never queued behind the pool's pulls): see _stop_turn.
        self._sends: queue.Queue[str | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._hands_free: Any = None
        self._listener: Any = None
        self._closing = False
        # Generations: results of stale loads (and voice preparations) are ignored.
        self._loads = {"chat": 0, "asr": 0, "voice": 0, "prepare": 0}
        self.pipeline_event.connect(self._on_turn_event)
        self._hands_free_failed.connect(self._on_hands_free_failed)

    # -- loading ------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the persona, speech recognition and the voice model in the background."""
        self.workers.run(_sweep_leftovers)  # what a killed earlier run left half-written
        self.load_persona(self.settings.persona)
        self.load_recognizer()
        self.load_voice_output()

    def _set_state(self, part: str, state: str, text: str) -> None:
        self.states[part] = state
        self.part_state.emit(part, state, text)

    def load_persona(self, ref: str | None) -> None:
        """Switch to persona ``ref`` (its model loads in a worker; the history stays)."""
        self._loads["chat"] += 1
        generation = self._loads["chat"]
        try:
            persona = self.backends.persona(ref)
        except TalkError as err:  # before any loading: a broken or missing persona.json
            self._load_failed(generation, "chat", err)
            return
        where = ("on " + self.settings.remote_url if self.settings.chat_backend == "remote"
                 else "")
        self._set_state("chat", LOADING, f"Loading {persona.label} {where}".strip() + "…")
        self.workers.run(self.backends.chat, persona, self.settings, name="load persona",
                         on_done=lambda backend: self._chat_loaded(generation, persona, backend),
                         on_error=lambda err: self._load_failed(generation, "chat", err))

    def _load_failed(self, generation: int, part: str, err: TalkError) -> None:
        if generation != self._loads[part] or self._closing:
            return
        if part == "chat" and self.persona is not None and self.session is not None:
            # Switching failed: keep talking to the persona that is still loaded.
            self._set_state("chat", READY, f"{self.persona.label} is ready.")
            self.error.emit("Persona", TalkError(
                f"Could not switch persona: {err.message} Still talking to "
                f"{self.persona.label}.", hint=err.hint, code=err.code))
            return
        self._set_state(part, FAILED, err.message)
        self.error.emit({"chat": "Chat model", "asr": "Speech recognition",
                         "voice": "Voice"}[part], err)

    def _chat_loaded(self, generation: int, persona: Any, backend: Any) -> None:
        if generation != self._loads["chat"] or self._closing:
            return
        from engine.conversation import ChatSession
        from engine.pipeline.turns import VoicePipeline

        if self.session is None:
            try:
                self.session = ChatSession(self._session_store, backend, persona.id,
                                           self.conversation_id)
            except TalkError as err:  # e.g. the database cannot be written
                self._set_state("chat", FAILED, err.message)
                self.error.emit("Conversations", err)
                return
            self.persona = persona
            self.pipeline = VoicePipeline(self.session, recognizer=self.recognizer,
                                          on_event=self.pipeline_event.emit)
            self._apply_voice_output()
        else:
            self._stop_turn("persona switched")  # queued messages first, in the old persona
            self.session.switch_backend(backend, persona.id)
            self.persona = persona
        self.conversation_id = self.session.conversation_id
        self._set_state("chat", READY, f"{persona.label} is ready.")
        self.session_ready.emit(self.conversation_id)

    def load_recognizer(self) -> None:
        """(Re)load speech recognition with the current settings."""
        self._loads["asr"] += 1
        generation = self._loads["asr"]
        self._set_state("asr", LOADING,
                        f"Loading speech recognition ({_whisper_label(self.settings.asr_model)})…")

        def loaded(recognizer: Any) -> None:
            if generation != self._loads["asr"] or self._closing:
                return
            self.recognizer = recognizer
            if self.pipeline is not None:
                self.pipeline.set_recognizer(recognizer)
            # The model "auto" chose, by name.
            name = getattr(recognizer, "model_name", self.settings.asr_model)
            self._set_state("asr", READY, f"Speech recognition: {_whisper_label(name)}.")

        self.workers.run(self.backends.recognizer, self.settings, name="load speech recognition",
                         on_done=loaded,
                         on_error=lambda err: self._load_failed(generation, "asr", err))

    def load_voice_output(self) -> None:
        """(Re)load the voice model and speaker, or turn spoken replies off."""
        self._loads["voice"] += 1
        generation = self._loads["voice"]
        old_player, self.tts, self.player = self.player, None, None
        self._apply_voice_output()
        if old_player is not None:
            if self.pipeline is not None and self.pipeline.busy:
                self.pipeline.barge_in("voice settings changed")  # it speaks through it
            old_player.close()
        if not self.settings.speak_replies:
            self._set_state("voice", OFF, "Spoken replies are off (Settings).")
            return
        self._set_state("voice", LOADING, "Loading the voice model…")

        def loaded(parts: tuple[Any, Any]) -> None:
            tts, player = parts
            if generation != self._loads["voice"] or self._closing:
                player.close()
                return
            self.tts, self.player = tts, player
            self._apply_voice_output()
            self._prepare_speaking_voice()

        def failed(err: TalkError) -> None:
            if generation != self._loads["voice"] or self._closing:
                return
            # Not an error the person caused: say plainly that replies stay text, and why.
            hint = err.hint
            if err.code == "model_missing":  # the engine's hint names the CLI command
                hint = "Download a voice model in Models (Ctrl+M)."
            self._set_state("voice", FAILED, f"Replies are text only: {err.message}"
                            + (f" {hint}" if hint else ""))

        self.workers.run(self.backends.voice_output, self.settings, name="load voice model",
                         on_done=loaded, on_error=failed)

    def set_voice(self, name: str | None) -> None:
        """Speak replies in the voice ``name`` (enrolled or ``builtin:...``; None: default)."""
        try:
            self.voice = self.backends.voice(name)
        except TalkError as err:
            self.voice = None
            self.error.emit("Voice", err)
        self._apply_voice_output()
        if self.tts is not None:
            self._prepare_speaking_voice()

    def _prepare_speaking_voice(self) -> None:
        """Encode (or load) the speaking voice's state now, not inside the first reply."""
        self._loads["prepare"] += 1
        current = (self._loads["voice"], self._loads["prepare"])
        voice, tts = self.speaking_voice(), self.tts
        name = getattr(voice, "name", "the default voice")
        self._set_state("voice", LOADING, f"Preparing {name} for the voice model…")

        def latest() -> bool:  # a newer model or voice choice supersedes this preparation
            return current == (self._loads["voice"], self._loads["prepare"]) and not self._closing

        def ready(_: Any = None) -> None:
            if latest():
                self._set_state("voice", READY, self.voice_status())

        def failed(err: TalkError) -> None:
            if latest():
                self._set_state("voice", READY, self.voice_status())
                self.error.emit("Voice", err)

        self.workers.run(self.prepare_voice, voice, tts, name="prepare voice", on_done=ready,
                         on_error=failed)

    def prepare_voice(self, voice: Any, tts: Any = None) -> str | None:
        """Compute ``voice``'s state for the voice model (run it on a worker); the model's id.

        None when no voice model is loaded: the state is then made on first use.
        """
        tts = tts if tts is not None else self.tts
        if tts is None or not hasattr(tts, "voice_state"):
            return None
        if self.pipeline is not None:
            self.pipeline.gate.run(tts.voice_state, voice)
        else:
            tts.voice_state(voice)
        return str(getattr(tts, "model_name", tts.model_id))

    def speaking_voice(self) -> Any:
        """The voice replies are spoken in (None: the default built-in voice).

        The chosen one, unless it is enrolled and only the weights without cloning are pulled.
        """
        from engine.tts.builtin import BuiltinVoice

        if (self.voice is not None and not isinstance(self.voice, BuiltinVoice)
                and self.tts is not None and not getattr(self.tts, "cloning", True)):
            return None
        return self.voice

    @property
    def voice_substituted(self) -> bool:
        """Whether the chosen voice cannot be cloned and the default built-in voice speaks."""
        return self.speaking_voice() is not self.voice

    def voice_status(self) -> str:
        """The status line for spoken replies (which voice, which model, and why not cloned)."""
        from engine.tts.builtin import describe_voice

        text = f"Replies are spoken in {describe_voice(self.speaking_voice())}"
        if self.tts is not None:
            text += f" ({self.tts.model_id})"
        text += "."
        if self.voice_substituted:
            from engine.tts.pocket import cloning_hint

            text += (f" {self.voice.name} needs the voice-cloning weights, which are not "
                     f"downloaded. {cloning_hint()}")
        return text

    def _apply_voice_output(self) -> None:
        if self.pipeline is not None:
            speak = self.settings.speak_replies and self.tts is not None
            self.pipeline.set_voice_output(self.tts if speak else None,
                                           self.player if speak else None,
                                           self.speaking_voice())

    def apply_settings(self, new: Settings) -> None:
        """Use changed settings now, reloading only the parts they affect."""
        old, self.settings = self.settings, new
        if (old.chat_backend, old.remote_url, old.remote_api, old.remote_model, old.device) != (
                new.chat_backend, new.remote_url, new.remote_api, new.remote_model, new.device):
            self.load_persona(self.persona.id if self.persona else new.persona)
        if (old.asr_backend, old.asr_model, old.language, old.device) != (
                new.asr_backend, new.asr_model, new.language, new.device):
            self.load_recognizer()
        if (old.speak_replies, old.output_device, old.device, old.tts_model) != (
                new.speak_replies, new.output_device, new.device, new.tts_model):
            self.load_voice_output()
        if old.sensitivity != new.sensitivity or old.input_device != new.input_device:
            self._listener = None
            if self._hands_free is not None:
                self.set_hands_free(False)
                self.set_hands_free(True)

    def save_settings(self, settings: Settings) -> None:
        """Use ``settings`` from now on and write them to the settings file.

        A failed write is reported through :attr:`settings_error`; the settings apply anyway.
        """
        from engine import settings as settings_file

        self.settings = settings
        try:
            settings_file.save(settings)
        except TalkError as err:
            self.settings_error.emit(err)

    # -- conversations ------------------------------------------------------------------------
    def list_conversations(self, text: str = "") -> list[Conversation]:
        """The stored conversations, most recent first; only those containing ``text`` if any."""
        return self.store.search(text) if text else self.store.conversations()

    def conversation_messages(self, conversation_id: int) -> list[Message]:
        """A stored conversation's turns as messages to show, each reply by its persona's name.

        Raises:
            TalkError: the conversation could not be read.

        """
        names = _persona_labels()
        return [Message(t.role, t.text, t.created, t.status,
                        names.get(t.persona) if t.role == "assistant" else None)
                for t in self.store.turns(conversation_id)]

    def title_suggestion(self, conversation_id: int) -> str:
        """The title to offer when renaming: the current one, else the opening words."""
        current = next((c.title for c in self.store.conversations()
                        if c.id == conversation_id), "")
        if current:
            return current
        first = next((t.text for t in self.store.turns(conversation_id)
                      if t.role == "user" and t.text), "")
        return " ".join(first.split())[:60] or "New conversation"

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        """Set a conversation's title (trimmed, at most 200 characters).

        Raises:
            TalkError: the database could not be written.

        """
        self.store.rename(conversation_id, title.strip()[:200])

    def open_conversation(self, conversation_id: int) -> None:
        """Continue a stored conversation (stops a running reply first)."""
        self.conversation_id = conversation_id
        if self.session is not None:
            self._stop_turn("conversation switched")
            self.session.open_conversation(conversation_id)

    def new_conversation(self) -> int:
        """Start a new conversation with the current persona; returns its id."""
        self._stop_turn("new conversation")
        if self.session is not None:
            self.conversation_id = self.session.new_conversation()
        else:
            persona = self.persona.id if self.persona else self.settings.persona
            self.conversation_id = self.store.new_conversation(persona)
        self.conversations_changed.emit()
        return self.conversation_id

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation; deleting the open one opens the latest other one.

        A new, empty one is made only when none is left.
        """
        if conversation_id == self.conversation_id:
            self._stop_turn("conversation deleted")
        self.store.delete_conversation(conversation_id)
        if conversation_id == self.conversation_id:
            latest = self.store.latest_conversation()
            if latest is not None:
                self.open_conversation(latest)
            else:
                self.new_conversation()
        self.conversations_changed.emit()

    # -- turns --------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether a turn can be started (the chat model is loaded)."""
        return self.pipeline is not None and self.states["chat"] == READY

    def _not_ready(self, what: str) -> bool:
        if self.ready:
            return False
        state = self.states["chat"]
        message = ("The persona is still loading; try again in a moment." if state == LOADING
                   else "No persona is loaded: pick one, or pull one in Models.")
        self.error.emit(what, TalkError(message, code="not_ready"))
        return True

    def send_text(self, text: str) -> bool:
        """Send a typed message (interrupting a running reply); False if not sent."""
        if not text.strip() or self._closing:
            return False
        if self._not_ready("Chat"):
            return False
        if self.pipeline.busy or self._sends.unfinished_tasks:
            # Waiting for the old turn to wind down happens on the sender thread, not in the
            # window; a message sent behind queued ones waits its turn, so order is kept.
            self.pipeline.barge_in("new message")
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_queued, name="send",
                                                daemon=True)
                self._sender.start()
            self._sends.put(text)
        else:
            self.pipeline.start_text_turn(text)
        return True

    def _send_queued(self) -> None:
        """The sender thread: start each queued message once the turn before it has ended."""
        while (text := self._sends.get()) is not None:
            try:
                pipeline = self.pipeline
                if pipeline is not None and not self._closing:
                    pipeline.start_text_turn(text)
            except Exception as err:  # a bug: say so, in the window
                self.error.emit("Chat", TalkError(f"The message could not be sent: {err}",
                                                  code="internal_error"))
            finally:
                self._sends.task_done()
        self._sends.task_done()

    def stop_speaking(self) -> None:
        """Stop the reply now: generation, synthesis and playback; what was spoken is kept."""
        if self.pipeline is not None:
            self.pipeline.barge_in("stopped")

    def _stop_turn(self, reason: str) -> None:
        """Stop the running turn and wait for it (before the history changes under it).

        A message sent while the previous reply wound down is started first: it was written
        in this conversation and is kept there, not carried into the one opened next.
        """
        self._sends.join()  # bounded by the wind-down of the turn before them
        if self.pipeline is not None and self.pipeline.busy:
            self.pipeline.barge_in(reason)
            self.pipeline.wait()

    def _listener_for_settings(self) -> Any:
        if self._listener is None:
            from engine.audio.listener import Listener, ListenOptions

            self._listener = Listener(ListenOptions(sensitivity=self.settings.sensitivity),
                                      on_level=self._emit_level)
        return self._listener

    def _emit_level(self, level: float) -> None:
        pipeline = self.pipeline  # the one producer of the event stream
        if pipeline is not None:
            pipeline.emit(ev.LEVEL, dbfs=level)

    def _asr_missing(self) -> bool:
        if self.recognizer is not None:
            return False
        state = self.states["asr"]
        message = ("Speech recognition is still loading; type, or try again in a moment."
                   if state == LOADING else "Speech recognition is not available; see the "
                   "message above, or type instead.")
        self.error.emit("Microphone", TalkError(message, code="asr_not_ready"))
        return True

    def press_talk(self) -> bool:
        """Start recording (push-to-talk); interrupts the assistant. False if it cannot."""
        if self._ptt is not None or self._not_ready("Talk") or self._asr_missing():
            return False
        if self._hands_free is not None:
            return False  # hands-free is already listening
        if self.pipeline.busy:
            self.pipeline.barge_in("you started talking")  # the voice stops at once
        from engine.asr.incremental import IncrementalTranscriber
        from engine.audio.listener import PushToTalk

        listener = self._listener_for_settings()
        recognizer, gate = self.recognizer, self.pipeline.gate
        try:
            # Decodes at the pauses while the key is held, so letting go rarely waits for it.
            ptt = PushToTalk(self.backends.microphone(self.settings), listener,
                             lambda: IncrementalTranscriber(recognizer, gate=gate,
                                                            options=listener.options))
            ptt.press()
        except TalkError as err:
            self.error.emit("Microphone", err)
            return False
        self._ptt = ptt
        self.pipeline.emit(ev.LISTENING)
        return True

    def where_text(self) -> str:
        """Where the persona's model runs, in words: "CPU", "GPU (CUDA, fp16)", "server URL"."""
        backend = self.session.backend if self.session is not None else None
        if backend is None:
            return ""
        label = getattr(backend, "label", None) or getattr(backend, "url", None)
        if label:  # "URL · model (OpenAI API)"
            return f"server {label}"
        device = getattr(backend, "device", None)
        return {"cuda": "GPU (CUDA, fp16)", "cpu": "CPU"}.get(str(device), "")

    def release_talk(self, released_at: float | None = None) -> None:
        """Stop recording and send what was said (transcribed in the turn's thread).

        ``released_at`` (a perf_counter()) is when the key came up, if earlier than now.
        """
        ptt, self._ptt = self._ptt, None
        if ptt is None:
            return
        released = released_at or time.perf_counter()

        def finish() -> None:
            # On a worker: joining the recorder and any turn still winding down takes time.
            audio = ptt.release()
            if ptt.error is not None:  # the device failed mid-recording: keep what we have
                self.error.emit("Microphone", ptt.error)
            if not self._closing and self.pipeline is not None:
                self.pipeline.emit(ev.SPEECH_ENDED)
                self.pipeline.start_audio_turn(audio, released, early=ptt.early)
            elif ptt.early is not None:
                ptt.early.close()

        self.workers.run(finish, name="stop recording",
                         on_error=lambda err: self.error.emit("Microphone", err))

    @property
    def talking(self) -> bool:
        """Whether push-to-talk is recording."""
        return self._ptt is not None

    @property
    def hands_free(self) -> bool:
        """Whether hands-free listening is on."""
        return self._hands_free is not None

    def set_hands_free(self, on: bool) -> bool:
        """Turn hands-free listening on or off; returns whether it is on now."""
        if not on:
            runner, self._hands_free = self._hands_free, None
            if runner is not None:
                runner.stop()
                self.hands_free_changed.emit(False)
            return False
        if self._hands_free is not None:
            return True
        if self._not_ready("Hands-free") or self._asr_missing():
            return False
        from engine.pipeline.handsfree import HandsFree

        try:
            runner = HandsFree(self.pipeline, self.backends.microphone(self.settings),
                               self._listener_for_settings(),
                               on_error=self._hands_free_failed.emit)
            runner.start()
        except TalkError as err:
            self.error.emit("Microphone", err)
            return False
        self._hands_free = runner
        self.hands_free_changed.emit(True)
        return True

    def _on_hands_free_failed(self, err: TalkError) -> None:
        """The microphone died while listening hands-free: say so and switch it off."""
        runner, self._hands_free = self._hands_free, None
        if runner is not None:
            runner.stop()
        if not self._closing:
            self.error.emit("Microphone", err)
            self.hands_free_changed.emit(False)

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` ran (late queued signals are then ignored)."""
        return self._closing

    def _on_turn_event(self, event: Event) -> None:
        if self._closing:
            return
        if event.type in (ev.TURN_DONE, ev.TRANSCRIPT):
            self.conversations_changed.emit()
        elif event.type == ev.ERROR and event.data.get("stage") == "chat":
            self.conversations_changed.emit()

    def play_sample(self, voice: Any) -> None:
        """Play ``voice``'s stored sample on the output device and wait (run it on a worker)."""
        from engine.audio.player import play_blocking

        audio, rate = voice.sample()
        play_blocking(audio, rate, device=self.settings.output_device)

    def preview_voice(self, voice: Any, text: str) -> None:
        """Speak ``text`` in ``voice`` on the output device and wait (run it on a worker).

        Raises:
            TalkError: the voice model is not loaded (the message says why), or playback failed.

        """
        tts = self.tts
        if tts is None:
            reason = {LOADING: "The voice model is still loading; try again in a moment.",
                      OFF: "Spoken replies are off; turn them on in Settings to load the "
                           "voice model."}.get(self.states["voice"])
            raise TalkError(reason or "The voice model is not available. Pull it in Models "
                            "(Pocket TTS), then try again.", code="tts_not_ready")
        import numpy as np

        from engine.audio.player import play_blocking

        def synthesise() -> list[Any]:
            return list(tts.synthesize(text, voice))

        chunks = (self.pipeline.gate.run(synthesise) if self.pipeline is not None
                  else synthesise())
        if chunks:
            play_blocking(np.concatenate([c.samples for c in chunks]), chunks[0].rate,
                          device=self.settings.output_device)

    # -- shutting down ------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop everything and wait for every thread; what was shown stays stored."""
        self._closing = True
        self.set_hands_free(False)
        ptt, self._ptt = self._ptt, None
        if ptt is not None:
            ptt.cancel()
        if self.pipeline is not None:
            # A reply being streamed is stored as cut. Local models stop within a decoding
            # step; a remote server may take until its timeout, so the wait is bounded.
            self.pipeline.close(timeout=15)
        if self._sender is not None:  # it starts nothing more now (closing); let it end
            self._sends.put(None)
            # Bounded: it may still wait on a remote turn that outlived the close above.
            self._sender.join(timeout=15)
            self._sender = None
        self.workers.shutdown()  # a model still loading finishes first (it cannot be cut)
        if self.pipeline is not None:
            self.pipeline.close(timeout=15)  # in case a worker started a turn meanwhile
        if self.player is not None:
            self.player.close()
            self.player = None
        self._session_store.close()
        self.store.close()


def _whisper_label(model: str) -> str:
    if model in ("bundled", "bundled-tiny.en"):
        return "Whisper tiny.en (bundled)"
    return "Whisper, chosen for this computer" if model == "auto" else f"Whisper {model}"


def _persona_labels() -> dict[str, str]:
    """Persona id → the name shown for it (read from persona.json files: no model loads)."""
    from engine.models.registry import list_personas

    personas, _broken = list_personas()
    return {p.id: p.label for p in personas}


def _sweep_leftovers() -> None:
    from engine.fsutil import sweep_leftovers

    sweep_leftovers(paths.data_dir())

