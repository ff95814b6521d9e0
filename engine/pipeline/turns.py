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
from typing import Any

import numpy as np

from engine.conversation import ChatSession
from engine.errors import ChatError, TalkError
from engine.pipeline import events as ev
from engine.pipeline.events import Event, EventSink, EventType, Stage
from engine.pipeline.gate import DeviceGate
from engine.pipeline.protocols import AudioPlayer, EarlyTranscript, Recognizer, Synthesizer
from engine.pipeline.run import TurnResult, TurnRun
from engine.tts.text import SentenceSplitter

# The first spoken piece may end after this many words when no punctuation has come yet: the
# starter's first sentence is ~10 words, and the voice can start on 5 while the rest is
# generated (benchmarks/first_piece.py prints the rules side by side).
FIRST_WORDS = 5


class TranscriptionError(TalkError):
    """Speech recognition failed."""

    code = "transcription_failed"


class SynthesisError(TalkError):
    """Speech synthesis failed."""

    code = "synthesis_failed"


class _StageFailed(Exception):
    def __init__(self, stage: Stage, error: TalkError):
        super().__init__(error.message)
        self.stage, self.error = stage, error


# Voiced audio a spoken turn needs before it is transcribed (five 30 ms VAD frames): a short
# word has more, a tap of the talk key has none.
MIN_SPEECH_S = 0.15


class VoicePipeline:
    """Owns the backends of one conversation and runs its turns, one :class:`TurnRun` each.

    Everything long-lived is here (the session, recognizer, voice output, the device gate);
    everything about one turn is on its run. Collaborators are given, never rewired: the gate
    goes to the chat backend as an argument of each reply, the run's listener to the player
    with each piece.
    """

    def __init__(self, session: ChatSession, *, recognizer: Recognizer | None = None,
                 tts: Synthesizer | None = None, player: AudioPlayer | None = None,
                 voice: Any = None, on_event: EventSink | None = None,
                 gate: DeviceGate | None = None):
        self.session = session
        self.recognizer, self.tts, self.player, self.voice = recognizer, tts, player, voice
        self.on_event: EventSink = on_event or (lambda event: None)
        self.gate = gate or DeviceGate()
        self.min_speech_s = MIN_SPEECH_S
        self._start_lock = threading.Lock()
        self._turns = 0  # numbers the turns; every turn event carries it as data["turn"]
        self._run: TurnRun | None = None  # the turn running (or the last one)
        self._thread: threading.Thread | None = None
        self.last_result: TurnResult | None = None

    # -- public API ---------------------------------------------------------------------------
    def set_voice_output(self, tts: Synthesizer | None, player: AudioPlayer | None,
                         voice: Any = None) -> None:
        """Speak replies with ``tts`` through ``player`` (both None: replies stay text).

        Takes effect from the next turn; the GUI calls it when the voice model finishes loading
        or the person turns speaking off.
        """
        self.tts, self.player, self.voice = tts, player, voice

    def set_recognizer(self, recognizer: Recognizer | None) -> None:
        """Transcribe spoken turns with ``recognizer`` from the next turn on."""
        self.recognizer = recognizer

    def run_text_turn(self, text: str) -> TurnResult:
        """A typed turn, on this thread, until it is done (or cancelled)."""
        run = self._new_run(time.perf_counter())
        self._execute(run, text, None)
        return run.result

    def run_audio_turn(self, audio: np.ndarray, speech_ended: float | None = None, *,
                       early: EarlyTranscript | None = None) -> TurnResult:
        """A spoken turn; ``speech_ended`` (perf_counter) is when the user stopped talking.

        ``early``: the transcriber that listened while the key was held
        (engine.asr.incremental); it gives the transcript of ``audio``, often already decoded.
        """
        run = self._new_run(speech_ended or time.perf_counter())
        self._execute(run, None, audio, early)
        return run.result

    def start_text_turn(self, text: str) -> TurnRun:
        """Run a typed turn in the background (interrupting a running one); its handle."""
        return self._start(time.perf_counter(), text, None)

    def start_audio_turn(self, audio: np.ndarray, speech_ended: float | None = None, *,
                         early: EarlyTranscript | None = None) -> TurnRun:
        """Run a spoken turn in the background (interrupting a running one); its handle."""
        return self._start(speech_ended or time.perf_counter(), None, audio, early)

    def emit(self, kind: EventType, **data: Any) -> None:
        """Report a capture-side event (listening, level, speech started/ended) in the stream."""
        event = Event(kind, data)  # a wrong field is a bug of the caller: it raises here
        try:
            self.on_event(event)
        except Exception:  # a renderer's bug must not break capture
            pass

    @property
    def busy(self) -> bool:
        """Whether a turn is running (generating or speaking)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def current(self) -> TurnRun | None:
        """The running turn (or the last one)."""
        return self._run

    def barge_in(self, reason: str = "interrupted") -> None:
        """Stop the running turn now: generation, synthesis and playback."""
        run = self._run
        if run is not None:
            run.stop(reason)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the background turn to finish."""
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Interrupt and wait (at most ``timeout`` s); the turn's threads are gone afterwards."""
        self.barge_in("closing")
        self.wait(timeout)

    # -- the turn -----------------------------------------------------------------------------
    def _new_run(self, started: float) -> TurnRun:
        self._turns += 1
        # The voice output is read once: a change made mid-turn applies from the next turn.
        speaks = self.tts is not None and self.player is not None
        run = TurnRun(self._turns, started, self.on_event,
                      player=self.player if speaks else None)
        self._run = run
        return run

    def _start(self, started: float, text: str | None, audio: np.ndarray | None,
               early: EarlyTranscript | None = None) -> TurnRun:
        # One turn at a time, even when two threads (the window, hands-free) start turns at
        # once: check, interrupt and start under one lock. The run (and its cancel token)
        # exists before its thread does, so a barge-in right after starting is never missed.
        with self._start_lock:
            if self.busy:
                self.barge_in("new turn")
                self.wait()
            run = self._new_run(started)
            self._thread = threading.Thread(target=self._execute,
                                            args=(run, text, audio, early),
                                            name="pipeline-turn", daemon=True)
            self._thread.start()
            return run

    def _execute(self, run: TurnRun, text: str | None, audio: np.ndarray | None,
                 early: EarlyTranscript | None = None) -> None:
        """Run the turn to its end on this thread; its result goes on the run."""
        result = TurnResult()
        try:
            self._turn(run, text, audio, result, early)
        except Exception as err:  # a bug must still end the turn visibly, never silently
            result.failed_stage = Stage.PIPELINE
            run.emit(ev.ERROR, stage=Stage.PIPELINE, code="internal_error",
                     message=f"The turn failed unexpectedly: {type(err).__name__}: {err}",
                     hint=None)
        finally:
            self.last_result = result
            run.finish(result)

    def _turn(self, run: TurnRun, text: str | None, audio: np.ndarray | None,
              result: TurnResult, early: EarlyTranscript | None = None) -> None:
        voice_out = (self.tts, run.player, self.voice) if run.player is not None else None
        run.emit(ev.TURN_STARTED, spoken=audio is not None, text=text or "")
        try:
            if audio is not None:
                text = self._transcribe(run, audio, early)
                if not text:
                    raise _StageFailed(Stage.TRANSCRIBE, TranscriptionError(
                        "No words recognised.", hint="Speak a little louder or closer.",
                        code="no_speech"))
            result.user = text or ""
            result.reply = self._reply(run, result.user, voice_out)
            result.cut = run.cancel.cancelled
            if result.cut and voice_out is not None:
                # A spoken reply is cut where the voice stopped, not where the text did.
                spoken = " ".join(run.spoken)
                self.session.cut_reply(spoken)
                result.reply = spoken
        except _StageFailed as failed:
            result.failed_stage = failed.stage
            run.emit(ev.ERROR, stage=failed.stage, code=failed.error.code,
                     message=failed.error.message, hint=failed.error.hint)
        if result.failed_stage is None:
            run.mark("total")
        result.timings = run.timings
        if result.failed_stage is None:
            self.session.annotate_reply({"timings": result.timings,
                                         "voice": getattr(self.voice if voice_out else None,
                                                          "name", None)})
            run.emit(ev.TURN_DONE, user=result.user, reply=result.reply, cut=result.cut,
                     timings=result.timings)

    def _transcribe(self, run: TurnRun, audio: np.ndarray,
                    early: EarlyTranscript | None = None) -> str:
        from engine.audio.vad import has_speech

        # A tap of the talk key, or a key's auto-repeat, records silence; Whisper invents words
        # for silence ("Thank you.", "the"), so nothing without speech reaches it.
        if not has_speech(np.asarray(audio, dtype=np.float32), self.min_speech_s):
            if early is not None:
                early.close()
            raise _StageFailed(Stage.TRANSCRIBE, TranscriptionError(
                "No speech heard.", hint="Hold the talk key (or Space) while you speak, and "
                "let go when you are done.", code="no_speech"))
        recognizer = self.recognizer
        if recognizer is None:
            if early is not None:
                early.close()
            raise _StageFailed(Stage.TRANSCRIBE, TranscriptionError(
                "Speech recognition is not loaded.", code="asr_not_ready"))
        try:
            if early is not None:  # decoded while the key was held, or now if it was not
                transcript = early.finish(audio)
            else:
                transcript = self.gate.run(recognizer.transcribe, audio)
        except TalkError as err:
            raise _StageFailed(Stage.TRANSCRIBE, err) from err
        except Exception as err:
            raise _StageFailed(Stage.TRANSCRIBE, TranscriptionError(
                f"Speech recognition failed: {err}")) from err
        run.mark("asr")
        text = transcript.text.strip()
        if text:  # nothing recognised is an error, never an empty "You" message
            run.emit(ev.TRANSCRIPT, text=text, final=True)
        return text

    def _reply(self, run: TurnRun, text: str,
               voice_out: tuple[Any, Any, Any] | None) -> str:
        cancel = run.cancel
        synth = _Synthesis(run, self.gate, *voice_out) if voice_out is not None else None
        splitter = SentenceSplitter(first_words=FIRST_WORDS)
        pieces: list[str] = []
        try:
            stream = self.session.send(text, cancel=cancel, gate=self.gate)
            try:
                for piece in stream:
                    run.mark("first_token")
                    pieces.append(piece)
                    run.emit(ev.REPLY_TOKEN, text=piece)
                    if synth is not None:
                        for sentence in splitter.feed(piece):
                            run.mark("first_piece")
                            synth.put(sentence)
                    if cancel.cancelled:
                        break
            finally:
                stream.close()
        except Exception as err:
            if synth is not None:
                synth.abort()
                if run.player is not None:  # sentences already queued stop with the turn
                    run.player.stop()
            if not isinstance(err, TalkError):  # a model or tokenizer bug: say so, in words
                err = ChatError(f"The reply failed: {type(err).__name__}: {err}",
                                code="chat_crashed")
            raise _StageFailed(Stage.CHAT, err) from err
        reply = "".join(pieces).strip()
        run.mark("reply")
        run.emit(ev.REPLY_DONE, text=reply, cut=cancel.cancelled)
        if synth is not None and voice_out is not None:
            if not cancel.cancelled:
                for sentence in splitter.flush():
                    run.mark("first_piece")
                    synth.put(sentence)
            synth.finish()
            if synth.error is not None:  # the reply stands as text; say why it was not spoken
                run.emit(ev.ERROR, stage=Stage.TTS, code=synth.error.code,
                         message=synth.error.message, hint=synth.error.hint)
            player = voice_out[1]
            while not cancel.cancelled and not player.wait(0.05):
                pass
            if not cancel.cancelled:
                time.sleep(getattr(player, "latency", 0.0))  # the last block is heard
        return reply


class _Synthesis:
    """Synthesises queued sentences on its own thread, handing each chunk to the player at once.

    The first chunk of a sentence plays while the TTS still generates the rest. The device gate
    is held for one sentence; a cancel closes the TTS stream, which stops it at the next frame.
    """

    def __init__(self, run: TurnRun, gate: DeviceGate, tts: Synthesizer, player: AudioPlayer,
                 voice: Any):
        self.run, self.gate, self.cancel = run, gate, run.cancel
        self.tts, self.player, self.voice = tts, player, voice
        self.error: TalkError | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="pipeline-tts", daemon=True)
        self._thread.start()

    def put(self, sentence: str) -> None:
        self._queue.put(sentence)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def abort(self) -> None:
        self.cancel.cancel()
        self.finish()

    def _work(self) -> None:
        while (sentence := self._queue.get()) is not None:
            if self.cancel.cancelled or self.error is not None:
                continue  # drain the queue; nothing more is spoken
            try:
                with self.gate:
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
                    self.run.mark("tts_first_chunk")
                # The check above can pass just before a stop; the player checks again,
                # atomically with its stop, so a chunk of a stopped turn is never heard.
                self.player.enqueue(chunk.samples, chunk.rate, chunk.text, starts=not started,
                                    ends=False, listener=self.run.on_player, cancel=self.cancel)
                started = True
        finally:
            stream.close()  # stops the TTS at its next frame if we left early
            if started:
                self.player.end_piece(sentence, cancel=self.cancel)
