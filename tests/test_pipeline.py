"""The voice turn pipeline: event sequences with fake backends, barge-in, stage failures."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.conversation import ChatSession
from engine.errors import ChatError
from engine.pipeline import events as ev
from engine.pipeline.gate import DeviceGate
from engine.pipeline.turns import VoicePipeline
from engine.store import ConversationStore
from tests.fakes import FakeChat, FakePlayer, FakeRecognizer, FakeTTS

AUDIO = np.zeros(16000, np.float32)


@pytest.fixture
def store(tmp_path):
    store = ConversationStore(tmp_path / "c.sqlite3")
    yield store
    store.close()


@pytest.fixture
def player():
    player = FakePlayer(speed=10.0)
    yield player
    player.close()


def make(store, chat, *, recognizer=None, tts=None, player=None):
    events: list = []
    session = ChatSession(store, chat, "fake")
    pipeline = VoicePipeline(session, recognizer=recognizer, tts=tts, player=player,
                             on_event=events.append)
    pipeline.min_speech_s = 0  # the fake recognizer hears words in AUDIO (silence)
    return pipeline, events, session


def barge_in_once_speaking(pipeline, events, text):
    """Start a typed turn, interrupt it as soon as it speaks, and wait for it to end."""
    pipeline.start_text_turn(text)
    deadline = time.monotonic() + 5
    while not any(e.type == ev.SPEAKING_STARTED for e in events):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pipeline.barge_in("user spoke")
    pipeline.wait(5)


def kinds(events, *, skip=(ev.REPLY_TOKEN,)):
    return [e.type for e in events if e.type not in skip]


def test_typed_turn_without_voice(store):
    pipeline, events, session = make(store, FakeChat("Hi", " there."))
    result = pipeline.run_text_turn("hello")
    assert kinds(events, skip=()) == [ev.TURN_STARTED, ev.REPLY_TOKEN, ev.REPLY_TOKEN,
                                      ev.REPLY_DONE, ev.TURN_DONE]
    assert [e.data["text"] for e in events if e.type == ev.REPLY_TOKEN] == ["Hi", " there."]
    assert result.reply == "Hi there." and not result.cut
    turns = store.turns(session.conversation_id)
    assert [(t.role, t.text) for t in turns] == [("user", "hello"), ("assistant", "Hi there.")]
    assert set(turns[1].meta["timings"]) >= {"first_token", "reply", "total"}


def test_spoken_turn_speaks_sentence_by_sentence(store, player):
    tts = FakeTTS()
    pipeline, events, session = make(
        store, FakeChat("Fine", " thanks.", " And", " you?"), recognizer=FakeRecognizer(),
        tts=tts, player=player)
    result = pipeline.run_audio_turn(AUDIO)
    order = kinds(events)
    # Playback overlaps generation, so only these orderings are fixed:
    assert order[:2] == [ev.TURN_STARTED, ev.TRANSCRIPT] and order[-1] == ev.TURN_DONE
    assert order.count(ev.REPLY_DONE) == 1
    speaking = [(e.type, e.data["text"]) for e in events if e.type.startswith("speaking")]
    assert speaking == [(ev.SPEAKING_STARTED, "Fine thanks."), (ev.SPEAKING_ENDED, "Fine thanks."),
                        (ev.SPEAKING_STARTED, "And you?"), (ev.SPEAKING_ENDED, "And you?")]
    assert tts.received == ["Fine thanks.", "And you?"]
    assert player.played == ["Fine thanks.", "And you?"]
    assert result.user == "hello there" and result.reply == "Fine thanks. And you?"
    assert {"asr", "first_token", "first_piece", "tts_first_chunk", "first_audio",
            "total"} <= set(result.timings)
    assert result.timings["asr"] <= result.timings["first_token"] <= result.timings["first_audio"]


def test_first_sentence_is_spoken_while_the_reply_is_generated(store, player):
    chat = FakeChat("One.", " Two", " three", " four", " five", " six.", delay=0.05)
    pipeline, events, _ = make(store, chat, tts=FakeTTS(), player=player)
    pipeline.run_text_turn("count")
    first_audio = next(e.t for e in events if e.type == ev.SPEAKING_STARTED)
    reply_done = next(e.t for e in events if e.type == ev.REPLY_DONE)
    assert first_audio < reply_done


def test_a_sentence_plays_from_its_first_chunk_while_the_rest_is_synthesised(store):
    """Streamed TTS: first audio waits for one chunk, not the whole sentence."""
    slow_player = FakePlayer(speed=1.0)
    tts = FakeTTS(seconds=0.08, chunks=5, chunk_delay=0.1)  # 0.5 s to synthesise the sentence
    pipeline, events, _ = make(store, FakeChat("Hello there."), tts=tts, player=slow_player)
    try:
        result = pipeline.run_text_turn("hi")
    finally:
        slow_player.close()
    assert result.timings["first_audio"] < result.timings["tts_first_chunk"] + 0.08
    assert result.timings["first_audio"] < 0.3  # long before the sentence's 0.5 s of synthesis
    speaking = [(e.type, e.data["text"]) for e in events if e.type.startswith("speaking")]
    assert speaking == [(ev.SPEAKING_STARTED, "Hello there."),
                        (ev.SPEAKING_ENDED, "Hello there.")]  # once per sentence, not per chunk
    assert slow_player.chunks == 5 and slow_player.played == ["Hello there."]


def test_barge_in_stops_the_tts_stream_at_its_next_chunk(store):
    slow_player = FakePlayer(speed=1.0)
    tts = FakeTTS(seconds=0.08, chunks=50, chunk_delay=0.05)
    pipeline, events, _ = make(store, FakeChat("A long sentence to say."), tts=tts,
                               player=slow_player)
    try:
        barge_in_once_speaking(pipeline, events, "talk")
    finally:
        slow_player.close()
    assert tts.stopped == ["A long sentence to say."]  # its stream was closed early
    assert slow_player.chunks < 10


def test_a_chunk_synthesised_as_the_turn_stops_is_not_played(store):
    """A stop between the synthesis thread's cancel check and its hand-over drops the chunk.

    The player drops it, given the turn's token.
    """
    class StopsJustBefore(FakePlayer):
        def enqueue(self, samples, rate, text="", **piece):
            if self.chunks == 1:  # the second chunk: the stop lands after the turn's check
                pipeline.barge_in("user spoke")
            super().enqueue(samples, rate, text, **piece)

    player = StopsJustBefore(speed=1.0)
    tts = FakeTTS(seconds=0.08, chunks=5)
    pipeline, events, _ = make(store, FakeChat("A sentence to say."), tts=tts, player=player)
    try:
        pipeline.run_text_turn("talk")
    finally:
        player.close()
    assert player.chunks == 1  # the chunk handed over after the stop never reached the queue


def test_barge_in_stops_and_keeps_only_what_was_spoken(store):
    slow_player = FakePlayer(speed=1.0)
    chat = FakeChat("First sentence.", " Second", " sentence", " goes", " on", " and", " on.",
                    delay=0.05)
    pipeline, events, session = make(store, chat, tts=FakeTTS(seconds=2.0), player=slow_player)
    try:
        barge_in_once_speaking(pipeline, events, "talk to me")
        assert not pipeline.busy
    finally:
        slow_player.close()
    assert ev.CANCELLED in kinds(events)
    result = pipeline.last_result
    assert result.cut and result.reply == "First sentence."
    last = store.turns(session.conversation_id)[-1]
    assert (last.text, last.status) == ("First sentence.", "cut")
    assert session.history[-1].text == "First sentence."
    assert slow_player.played == []  # cut during the first sentence


def test_new_turn_interrupts_the_running_one(store, player):
    chat = FakeChat("a", " b", " c", " d", " e", delay=0.2)
    pipeline, events, session = make(store, chat)
    pipeline.start_text_turn("first")
    time.sleep(0.3)
    pipeline.start_text_turn("second")
    pipeline.wait(5)
    assert kinds(events).count(ev.CANCELLED) == 1
    users = [t.text for t in store.turns(session.conversation_id) if t.role == "user"]
    assert users == ["first", "second"]


@pytest.mark.parametrize(("stage", "setup"), [
    ("transcribe", lambda: {"recognizer": FakeRecognizer(fail=RuntimeError("boom"))}),
    ("transcribe", lambda: {"recognizer": FakeRecognizer(text="")}),
    ("chat", lambda: {"recognizer": FakeRecognizer(), "chat": FakeChat("a", "b", fail_after=1)}),
])
def test_a_failed_stage_ends_the_turn_with_an_error_event(store, player, stage, setup):
    parts = setup()
    chat = parts.pop("chat", FakeChat("ok."))
    pipeline, events, session = make(store, chat, tts=FakeTTS(), player=player, **parts)
    result = pipeline.run_audio_turn(AUDIO)
    errors = [e for e in events if e.type == ev.ERROR]
    assert result.failed_stage == stage and len(errors) == 1
    assert errors[0].data["stage"] == stage and errors[0].data["message"]
    assert ev.TURN_DONE not in kinds(events)
    # The conversation goes on.
    pipeline.recognizer = FakeRecognizer()
    session.backend = FakeChat("fine.")
    assert pipeline.run_audio_turn(AUDIO).reply == "fine."


def test_tts_failure_keeps_the_reply_as_text(store, player):
    from engine.errors import ModelNotAvailableError

    tts = FakeTTS(fail=ModelNotAvailableError("voice model missing"))
    pipeline, events, session = make(store, FakeChat("Hello."), tts=tts, player=player)
    result = pipeline.run_text_turn("hi")
    assert result.reply == "Hello."
    errors = [e.data for e in events if e.type == ev.ERROR]
    assert errors and errors[0]["stage"] == "tts" and errors[0]["code"] == "model_missing"
    assert kinds(events)[-1] == ev.TURN_DONE


def test_chat_error_message_is_the_backends(store):
    pipeline, events, _ = make(store, FakeChat("x", fail_after=0))
    pipeline.run_text_turn("hi")
    assert [e.data["code"] for e in events if e.type == ev.ERROR] == [ChatError.code]


def test_device_gate_serialises_and_is_fair():
    gate = DeviceGate()
    order: list[str] = []
    inside = threading.Event()

    def long_call():
        with gate:
            inside.set()
            for step in range(5):
                order.append(f"gen{step}")
                time.sleep(0.01)
                gate.yield_turn()

    def short_call():
        inside.wait()
        gate.run(order.append, "tts")

    threads = [threading.Thread(target=long_call), threading.Thread(target=short_call)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "tts" in order and order.index("tts") < len(order) - 1  # ran between two steps
    assert order.count("tts") == 1 and len(order) == 6


def test_voice_output_set_mid_turn_applies_from_the_next_turn(store, player):
    chat = FakeChat(*[f"w{i} " for i in range(40)], delay=0.02)
    pipeline, events, session = make(store, chat)
    pipeline.start_text_turn("hello")
    while not any(e.type == ev.REPLY_TOKEN for e in events):
        time.sleep(0.01)
    pipeline.set_voice_output(FakeTTS(), player)  # the voice model finished loading
    pipeline.barge_in("stop")
    pipeline.wait()
    reply = store.turns(session.conversation_id)[-1]
    assert reply.status == "cut" and reply.text.startswith("w0")  # not blanked as "unspoken"
    assert player.played == []


def test_two_turns_started_at_once_run_one_after_the_other(store):
    chat = FakeChat("a", "b", "c", delay=0.02)
    pipeline, events, session = make(store, chat)
    threads = [threading.Thread(target=pipeline.start_text_turn, args=(f"m{i}",))
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pipeline.wait()
    bounds = [e.type for e in events if e.type in (ev.TURN_STARTED, ev.TURN_DONE)]
    # Each turn ends before the next starts: never two on one session at once.
    assert bounds == [ev.TURN_STARTED, ev.TURN_DONE] * 3
    assert [t.role for t in store.turns(session.conversation_id)][-2:] == ["user", "assistant"]
    starts = [e.data["turn"] for e in events if e.type == ev.TURN_STARTED]
    assert starts == sorted(set(starts)) and len(starts) == 3


def test_a_crash_in_the_chat_model_ends_the_turn_with_an_error(store):
    class Broken(FakeChat):
        def stream_reply(self, history, *, cancel=None, gate=None):
            yield "Hal"
            raise RuntimeError("index out of range in self")

    pipeline, events, session = make(store, Broken())
    pipeline.start_text_turn("hi")
    pipeline.wait()
    errors = [e.data for e in events if e.type == ev.ERROR]
    assert errors and errors[0]["stage"] == "chat" and "index out of range" in errors[0]["message"]
    assert store.turns(session.conversation_id)[-1].text == "Hal"


def test_a_recording_without_speech_never_reaches_the_recognizer_or_the_history(store):
    recognizer = FakeRecognizer("Thank you.")  # what Whisper invents for silence
    pipeline, events, session = make(store, FakeChat("Hi."), recognizer=recognizer)
    pipeline.min_speech_s = 0.15  # the app's gate
    result = pipeline.run_audio_turn(np.zeros(8000, np.float32))  # a tap of the talk key
    assert result.failed_stage == "transcribe" and recognizer.received == []
    error = next(e for e in events if e.type == ev.ERROR)
    assert error.data["code"] == "no_speech" and error.data["message"] == "No speech heard."
    assert ev.TRANSCRIPT not in kinds(events)  # no empty "You" message
    assert store.turns(session.conversation_id) == []


def test_nothing_recognised_is_an_error_not_an_empty_message(store):
    pipeline, events, session = make(store, FakeChat("Hi."), recognizer=FakeRecognizer(""))
    result = pipeline.run_audio_turn(AUDIO)
    assert result.failed_stage == "transcribe"
    assert ev.TRANSCRIPT not in kinds(events)
    assert store.turns(session.conversation_id) == []


# -- the turn object --------------------------------------------------------------------------


def test_each_turn_is_its_own_run_a_handle_to_wait_on(store):
    pipeline, events, session = make(store, FakeChat("Hi", " there.", delay=0.02))
    first = pipeline.start_text_turn("one")
    assert first.wait(10) and first.done
    assert first.result.reply == "Hi there." and first.result.failed_stage is None
    assert set(first.result.timings) >= {"first_token", "reply", "total"}
    second = pipeline.start_text_turn("two")
    assert second is not first and second.number == first.number + 1
    assert second.wait(10) and second.result.user == "two"
    numbers = {e.data["turn"] for e in events if "turn" in e.data}
    assert numbers == {first.number, second.number}  # every turn event names its turn


def test_a_cut_turns_late_player_event_reaches_that_turn_not_the_next(store):
    player = FakePlayer(speed=1.0)  # real time: the sentence is still playing when cut
    try:
        tts = FakeTTS(seconds=2.0)
        pipeline, events, session = make(store, FakeChat("A long sentence."), tts=tts,
                                         player=player)
        first = pipeline.start_text_turn("speak")
        deadline = time.monotonic() + 10
        while not any(e.type == ev.SPEAKING_STARTED for e in events):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = pipeline.start_text_turn("again")  # interrupts the first mid-sentence
        assert first.wait(10) and first.result.cut
        second.stop("done with it")
        second.wait(10)
        ended = [e.data["turn"] for e in events if e.type == ev.SPEAKING_ENDED]
        assert ended and ended[0] == first.number  # the cut sentence's end is the first's
        assert first.spoken == ["A long sentence."]
    finally:
        player.close()


def test_collaborators_are_given_not_rewired(store):
    gates = []

    class Chat(FakeChat):
        def stream_reply(self, history, *, cancel=None, gate=None):
            gates.append(gate)
            yield from super().stream_reply(history, cancel=cancel, gate=gate)

    player = FakePlayer(speed=50.0)
    try:
        own = player.on_event
        gate = DeviceGate()
        session = ChatSession(store, Chat("Hi."), "fake")
        pipeline = VoicePipeline(session, tts=FakeTTS(), player=player, gate=gate)
        assert player.on_event is own and not hasattr(session.backend, "gate")
        pipeline.run_text_turn("hello")
        assert gates == [gate]  # the gate goes with the request
        assert player.on_event is own  # pieces carry their turn's listener instead
    finally:
        player.close()


def test_events_are_typed_and_their_fields_checked():
    event = ev.Event("turn_done", {"user": "u", "reply": "r", "cut": False, "timings": {}})
    assert event.type is ev.EventType.TURN_DONE and event.type == "turn_done"
    with pytest.raises(TypeError, match="missing"):
        ev.Event(ev.TURN_DONE, {"user": "u"})
    with pytest.raises(TypeError, match="unknown"):
        ev.Event(ev.LEVEL, {"dbfs": -20.0, "db": -20.0})
    with pytest.raises(ValueError):
        ev.Event("speech_begun", {})  # one spelling per kind
    with pytest.raises(TypeError):
        event.data["user"] = "changed"  # frozen


def test_a_chat_crash_before_any_word_is_stored_as_no_reply_and_silences_the_voice(store):
    class Crashing(FakeChat):
        def stream_reply(self, history, *, cancel=None, gate=None):
            yield "A first sentence. "
            time.sleep(0.3)  # its voice has started
            raise RuntimeError("CUDA error: device-side assert")

    player = FakePlayer(speed=1.0)  # real time: the sentence would play for 3 s
    try:
        pipeline, events, session = make(store, Crashing(), tts=FakeTTS(seconds=3.0),
                                         player=player)
        run = pipeline.start_text_turn("go")
        assert run.wait(10) and run.result.failed_stage == "chat"
        assert player.wait(1.0)  # stopped with the turn, not 3 s later
        stored = store.turns(session.conversation_id)[-1]
        assert stored.meta.get("error") == "chat_crashed"

        class Silent(FakeChat):
            def stream_reply(self, history, *, cancel=None, gate=None):
                raise RuntimeError("tokenizer exploded")
                yield  # a generator

        pipeline.session.backend = Silent()
        assert pipeline.run_text_turn("again").failed_stage == "chat"
        last = store.turns(session.conversation_id)[-1]
        assert (last.role, last.text, last.status) == ("assistant", "", "failed")
        assert last.meta["error"] == "chat_crashed" and "tokenizer exploded" in \
            last.meta["message"]
    finally:
        player.close()
