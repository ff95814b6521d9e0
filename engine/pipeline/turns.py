"""Runs conversation turns, spoken or typed, as one streamed pipeline.

    utterance → transcribe → history → stream the reply → split into sentences
              → synthesise each (while the next is generated) → play in order

Every step reports through one event callback. A stage that fails ends the turn with an error
event naming the stage; the conversation goes on. ``barge_in`` stops playback and generation at
once and records the interrupted reply as cut, holding only what was actually spoken.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.chat.types import CancelToken
from engine.conversation import ChatSession
from engine.errors import ChatError, TalkError
from engine.pipeline import events as ev
from engine.pipeline.events import Event, EventSink
from engine.pipeline.gate import DeviceGate
from engine.tts.text import SentenceSplitter


class TranscriptionError(TalkError):
    """Speech recognition failed."""

    code = "transcription_failed"


class SynthesisError(TalkError):
    """Speech synthesis failed."""

    code = "synthesis_failed"


class _StageFailed(Exception):
    def __init__(self, stage: str, error: TalkError):
        super().__init__(error.message)
        self.stage, self.error = stage, error


@dataclass
class TurnResult:
    """What one turn did."""

    user: str = ""
    reply: str = ""
    cut: bool = False
    failed_stage: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds from the turn's start


# Voiced audio a spoken turn needs before it is transcribed (five 30 ms VAD frames): a short
# word has more, a tap of the talk key has none.
MIN_SPEECH_S = 0.15


class VoicePipeline:
    """Owns the backends of one conversation and runs its turns."""

    def __init__(self, session: ChatSession, *, recognizer: Any = None, tts: Any = None,
                 player: Any = None, voice: Any = None, on_event: EventSink | None = None,
                 gate: DeviceGate | None = None):
        self.session = session
        self.recognizer, self.tts, self.player, self.voice = recognizer, tts, player, voice
        self.on_event = on_event or (lambda event: None)
        self.gate = gate or DeviceGate()
        if player is not None:
            player.on_event = self._on_player
        self._cancel: CancelToken | None = None
        self._start_lock = threading.Lock()
        self._turn_no = 0  # numbers the turns; every turn event carries it as data["turn"]
        self._turn_player: Any = None  # the player the running turn speaks through
        self._thread: threading.Thread | None = None
        self._spoken: list[str] = []
        self._turn_start = 0.0
        self._timings: dict[str, float] = {}
        self.last_result: TurnResult | None = None
        self.min_speech_s = MIN_SPEECH_S

    # -- public API ---------------------------------------------------------------------------
    def set_voice_output(self, tts: Any, player: Any, voice: Any = None) -> None:
        """Speak replies with ``tts`` through ``player`` (both None: replies stay text).

        Takes effect from the next turn; the GUI calls it when the voice model finishes loading
        or the person turns speaking off.
        """
        self.tts, self.player, self.voice = tts, player, voice
        if player is not None:
            player.on_event = self._on_player

    def set_recognizer(self, recognizer: Any) -> None:
        """Transcribe spoken turns with ``recognizer`` from the next turn on."""
        self.recognizer = recognizer

    def run_text_turn(self, text: str, cancel: CancelToken | None = None) -> TurnResult:
        """A typed turn, on this thread, until it is done (or cancelled)."""
        return self._run(text=text, audio=None, started=time.perf_counter(), cancel=cancel)

    def run_audio_turn(self, audio: np.ndarray, speech_ended: float | None = None,
                       cancel: CancelToken | None = None) -> TurnResult:
        """A spoken turn; ``speech_ended`` (perf_counter) is when the user stopped talking."""
        return self._run(text=None, audio=audio, started=speech_ended or time.perf_counter(),
                         cancel=cancel)

    def start_text_turn(self, text: str) -> None:
        """Run a typed turn in the background (interrupting a running one)."""
        self._start(lambda cancel: self.run_text_turn(text, cancel))

    def start_audio_turn(self, audio: np.ndarray, speech_ended: float | None = None) -> None:
        """Run a spoken turn in the background (interrupting a running one)."""
        self._start(lambda cancel: self.run_audio_turn(audio, speech_ended, cancel))

    def emit(self, kind: str, **data: Any) -> None:
        """Report a capture-side event (listening, level, speech started/ended) in the stream."""
        self._emit(kind, **data)

    @property
    def busy(self) -> bool:
        """Whether a turn is running (generating or speaking)."""
        return self._thread is not None and self._thread.is_alive()

    def barge_in(self, reason: str = "interrupted") -> None:
        """Stop the running turn now: generation, synthesis and playback."""
        cancel = self._cancel
        if cancel is None or cancel.cancelled:
            return
        cancel.cancel()
        player = self._turn_player
        if player is not None:
            player.stop()
        self._emit(ev.CANCELLED, reason=reason)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the background turn to finish."""
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Interrupt and wait (at most ``timeout`` s); the turn's threads are gone afterwards."""
        self.barge_in("closing")
        self.wait(timeout)

    # -- the turn -----------------------------------------------------------------------------
    def _start(self, run: Any) -> None:
        # One turn at a time, even when two threads (the window, hands-free) start turns at
        # once: check, interrupt and start under one lock. The cancel token exists before the
        # thread does, so a barge-in right after starting is never missed.
        with self._start_lock:
            if self.busy:
                self.barge_in("new turn")
                self.wait()
            cancel = CancelToken()
            self._cancel = cancel
            self._thread = threading.Thread(target=self._guarded, args=(run, cancel),
                                            name="pipeline-turn", daemon=True)
            self._thread.start()

    def _guarded(self, run: Any, cancel: CancelToken) -> None:
        try:
            run(cancel)
        except Exception as err:  # a bug must still end the turn visibly, never silently
            self._emit(ev.ERROR, stage="pipeline", code="internal_error",
                       message=f"The turn failed unexpectedly: {type(err).__name__}: {err}",
                       hint=None)

    def _emit(self, kind: str, **data: Any) -> None:
        if self._turn_no and "turn" not in data:
            data["turn"] = self._turn_no
        try:
            self.on_event(Event(kind, data))
        except Exception:  # a renderer's bug must not break the turn
            pass

    def _mark(self, name: str) -> None:
        self._timings.setdefault(name, time.perf_counter() - self._turn_start)

    def _run(self, text: str | None, audio: np.ndarray | None, started: float,
             cancel: CancelToken | None = None) -> TurnResult:
        cancel = cancel or CancelToken()
        self._cancel, self._spoken = cancel, []
        self._turn_no += 1
        # The voice output is read once: a change made mid-turn applies from the next turn.
        out = (self.tts, self.player, self.voice) if self.tts is not None and self.player \
            else None
        self._turn_player = out[1] if out else None
        if hasattr(self.session.backend, "gate"):  # the persona may have been switched
            self.session.backend.gate = self.gate
        self._turn_start, self._timings = started, {}
        result = TurnResult()
        self._emit(ev.TURN_STARTED, spoken=audio is not None, text=text or "")
        try:
            if audio is not None:
                text = self._transcribe(audio)
                if not text:
                    raise _StageFailed("transcribe", TranscriptionError(
                        "No words recognised.", hint="Speak a little louder or closer.",
                        code="no_speech"))
            result.user = text or ""
            result.reply = self._reply(result.user, cancel, out)
            result.cut = cancel.cancelled
            if result.cut and out is not None:
                # A spoken reply is cut where the voice stopped, not where the text did.
                self.session.cut_reply(" ".join(self._spoken))
                result.reply = " ".join(self._spoken)
        except _StageFailed as failed:
            result.failed_stage = failed.stage
            self._emit(ev.ERROR, stage=failed.stage, code=failed.error.code,
                       message=failed.error.message, hint=failed.error.hint)
        if result.failed_stage is None:
            self._mark("total")
        result.timings = dict(self._timings)
        if result.failed_stage is None:
            self.session.annotate_reply({"timings": result.timings,
                                         "voice": getattr(out[2] if out else None, "name",
                                                          None)})
            self._emit(ev.TURN_DONE, user=result.user, reply=result.reply, cut=result.cut,
                       timings=result.timings)
        self.last_result = result
        self._cancel = None
        return result

    def _transcribe(self, audio: np.ndarray) -> str:
        from engine.audio.vad import has_speech

        # A tap of the talk key, or a key's auto-repeat, records silence; Whisper invents words
        # for silence ("Thank you.", "the"), so nothing without speech reaches it.
        if not has_speech(np.asarray(audio, dtype=np.float32), self.min_speech_s):
            raise _StageFailed("transcribe", TranscriptionError(
                "No speech heard.", hint="Hold the talk key (or Space) while you speak, and "
                "let go when you are done.", code="no_speech"))
        try:
            transcript = self.gate.run(self.recognizer.transcribe, audio)
        except TalkError as err:
            raise _StageFailed("transcribe", err) from err
        except Exception as err:
            raise _StageFailed("transcribe", TranscriptionError(
                f"Speech recognition failed: {err}")) from err
        self._mark("asr")
        text = transcript.text.strip()
        if text:  # nothing recognised is an error, never an empty "You" message
            self._emit(ev.TRANSCRIPT, text=text, final=True)
        return text

    def _reply(self, text: str, cancel: CancelToken, out: tuple[Any, Any, Any] | None) -> str:
        synth = _Synthesis(self, cancel, *out) if out is not None else None
        splitter = SentenceSplitter()
        pieces: list[str] = []
        try:
            stream = self.session.send(text, cancel=cancel)
            try:
                for piece in stream:
                    self._mark("first_token")
                    pieces.append(piece)
                    self._emit(ev.REPLY_TOKEN, text=piece)
                    if synth is not None:
                        for sentence in splitter.feed(piece):
                            self._mark("first_piece")
                            synth.put(sentence)
                    if cancel.cancelled:
                        break
            finally:
                stream.close()
        except Exception as err:
            if synth is not None:
                synth.abort()
            if not isinstance(err, TalkError):  # a model or tokenizer bug: say so, in words
                err = ChatError(f"The reply failed: {type(err).__name__}: {err}",
                                code="chat_crashed")
            raise _StageFailed("chat", err) from err
        reply = "".join(pieces).strip()
        self._mark("reply")
        self._emit(ev.REPLY_DONE, text=reply, cut=cancel.cancelled)
        if synth is not None:
            if not cancel.cancelled:
                for sentence in splitter.flush():
                    self._mark("first_piece")
                    synth.put(sentence)
            synth.finish()
            if synth.error is not None:  # the reply stands as text; say why it was not spoken
                self._emit(ev.ERROR, stage="tts", code=synth.error.code,
                           message=synth.error.message, hint=synth.error.hint)
            player = out[1]
            while not cancel.cancelled and not player.wait(0.05):
                pass
            if not cancel.cancelled:
                time.sleep(getattr(player, "latency", 0.0))  # the last block is heard
        return reply

    def _on_player(self, kind: str, text: str) -> None:
        if kind == "speaking_started":
            self._mark("first_audio")
            self._spoken.append(text)
            self._emit(ev.SPEAKING_STARTED, text=text)
        else:
            self._emit(ev.SPEAKING_ENDED, text=text)


class _Synthesis:
    """Synthesises queued sentences on its own thread, handing each chunk to the player at once.

    The first chunk of a sentence plays while the TTS still generates the rest. The device gate
    is held for one sentence; a cancel closes the TTS stream, which stops it at the next frame.
    """

    def __init__(self, pipeline: VoicePipeline, cancel: CancelToken, tts: Any, player: Any,
                 voice: Any):
        self.pipeline, self.cancel = pipeline, cancel
        self.tts, self.player, self.voice = tts, player, voice
        self.error: TalkError | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pipeline-tts", daemon=True)
        self._thread.start()

    def put(self, sentence: str) -> None:
        self._queue.put(sentence)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def abort(self) -> None:
        self.cancel.cancel()
        self.finish()

    def _run(self) -> None:
        p = self.pipeline
        while (sentence := self._queue.get()) is not None:
            if self.cancel.cancelled or self.error is not None:
                continue  # drain the queue; nothing more is spoken
            try:
                with p.gate:
                    self._speak(sentence)
            except TalkError as err:  # includes the speaker vanishing: the reply stays as text
                self.error = err
            except Exception as err:  # a model crash is a stage failure, not a dead thread
                self.error = SynthesisError(f"Speech synthesis failed: {err}")

    def _speak(self, sentence: str) -> None:
        stream = self.tts.synthesize(sentence, self.voice)
        started = False
        try:
            for chunk in stream:
                if self.cancel.cancelled:
                    break
                if not started:
                    self.pipeline._mark("tts_first_chunk")
                self.player.enqueue(chunk.samples, chunk.rate, chunk.text, starts=not started,
                                    ends=False)
                started = True
        finally:
            stream.close()  # stops the TTS at its next frame if we left early
            if started:
                self.player.end_piece(sentence)
