"""Transcribing while the talk key is held: the same words as one-shot, decoded before release.

Through the bundled Whisper tiny.en (faster-whisper) on espeak-ng speech and on a real man's
reading (pocketsphinx-testdata), fed block by block as a microphone would.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.asr.incremental import IncrementalTranscriber
from engine.audio.listener import Listener, ListenOptions, PushToTalk, speech_bounds
from engine.audio.vad import VoiceActivity
from engine.errors import TalkError
from tests import real_speech
from tests.speech import SENTENCES, speech_array

BLOCK = 480  # 30 ms at 16 kHz, the size a microphone callback delivers here


class Counting:
    """A real recognizer that counts its calls."""

    def __init__(self, recognizer):
        self.recognizer, self.calls = recognizer, 0
        self.lock = threading.Lock()

    def transcribe(self, audio):
        with self.lock:
            self.calls += 1
        return self.recognizer.transcribe(audio)


@pytest.fixture(scope="module")
def tiny_en():
    from engine.asr import open_recognizer

    return open_recognizer("faster-whisper", device="cpu", language="en")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return speech_array(SENTENCES[1], tmp_path_factory.mktemp("speech"))


def _feed(early: IncrementalTranscriber, audio: np.ndarray) -> None:
    for start in range(0, len(audio), BLOCK):
        early.push(audio[start:start + BLOCK])


def _to_last_word(audio: np.ndarray) -> np.ndarray:
    """``audio`` ending at its last voiced frame (espeak-ng leaves some silence after it)."""
    vad = VoiceActivity(2)
    verdicts = [vad.is_speech(audio[i:i + BLOCK]) for i in range(0, len(audio) - BLOCK + 1,
                                                                     BLOCK)]
    bounds = speech_bounds(verdicts, len(audio), ListenOptions(margin_s=0.0))
    assert bounds is not None
    return audio[:bounds[1]]


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16000 * seconds), np.float32)


def _wait_for_early(early: IncrementalTranscriber, count: int = 1) -> None:
    for _ in range(400):
        if early.early_decodes >= count:
            return
        threading.Event().wait(0.025)
    raise AssertionError("no early decode happened")


def test_a_pause_before_release_is_decoded_early_and_reused(tiny_en, clip):
    recognizer = Counting(tiny_en)
    early = IncrementalTranscriber(recognizer)
    recording = np.concatenate([_silence(0.3), clip, _silence(0.5)])
    _feed(early, recording)
    _wait_for_early(early)
    trimmed = Listener().trim(recording, early.verdicts)
    transcript = early.finish(trimmed)
    assert early.hit is True
    assert recognizer.calls == 1  # nothing left to decode at release
    assert transcript.text == tiny_en.transcribe(trimmed).text  # the one-shot words
    assert "call me back" in transcript.text.lower()


def test_speech_after_the_pause_is_decoded_again_at_release(tiny_en, clip, tmp_path):
    more = speech_array(SENTENCES[2], tmp_path)
    recognizer = Counting(tiny_en)
    early = IncrementalTranscriber(recognizer)
    _feed(early, np.concatenate([clip, _silence(0.6)]))
    _wait_for_early(early)
    rest = _to_last_word(more)  # released right after the last word: no pause to use
    _feed(early, rest)  # the person went on talking: the early words are only half of it
    recording = np.concatenate([clip, _silence(0.6), rest])
    trimmed = Listener().trim(recording, early.verdicts)
    transcript = early.finish(trimmed)
    assert early.hit is False
    assert transcript.text == tiny_en.transcribe(trimmed).text
    assert "coffee" in transcript.text.lower()


def test_release_right_after_the_last_word_decodes_at_release(tiny_en, clip):
    recognizer = Counting(tiny_en)
    early = IncrementalTranscriber(recognizer)
    clip = _to_last_word(clip)
    _feed(early, clip)  # released right after the last word: no pause to use
    trimmed = Listener().trim(clip, early.verdicts)
    transcript = early.finish(trimmed)
    assert early.hit is False and early.early_decodes == 0
    assert recognizer.calls == 1
    assert transcript.text == tiny_en.transcribe(trimmed).text


def test_trim_with_the_early_verdicts_cuts_where_a_fresh_detector_does(clip):
    early = IncrementalTranscriber(Counting(None))
    recording = np.concatenate([_silence(0.5), clip, _silence(0.7)])
    _feed(early, recording)
    early.close()
    assert np.array_equal(Listener().trim(recording, early.verdicts),
                          Listener().trim(recording))


@pytest.mark.skipif(not real_speech.available(), reason=real_speech.SKIP_REASON)
def test_a_real_reader_with_pauses_gets_one_shot_words(tiny_en):
    reading = real_speech.join(real_speech.speaker("librivox")[:2], gap_s=0.5)
    recording = np.concatenate([reading, _silence(0.4)])
    recognizer = Counting(tiny_en)
    early = IncrementalTranscriber(recognizer)
    _feed(early, recording)
    _wait_for_early(early)
    trimmed = Listener().trim(recording, early.verdicts)
    transcript = early.finish(trimmed)
    assert transcript.text == tiny_en.transcribe(trimmed).text
    assert early.hit is True
    assert early.early_decodes >= 1


class _Mic:
    """A microphone that plays ``audio`` in 30 ms blocks and then waits to be stopped."""

    def __init__(self, audio: np.ndarray):
        self.audio, self.stopped, self.fed = audio, threading.Event(), threading.Event()

    def start(self):
        self.stopped.clear()

    def blocks(self):
        for start in range(0, len(self.audio), BLOCK):
            yield self.audio[start:start + BLOCK]
        self.fed.set()
        self.stopped.wait()

    def stop(self):
        self.stopped.set()

    def drain(self):
        return []


def test_push_to_talk_hands_its_early_transcript_to_the_pipeline(tiny_en, clip, tmp_path):
    from engine.conversation import ChatSession
    from engine.pipeline.turns import VoicePipeline
    from engine.store import ConversationStore
    from tests.fakes import FakeChat

    recognizer = Counting(tiny_en)
    mic = _Mic(np.concatenate([clip, _silence(0.5)]))
    ptt = PushToTalk(mic, Listener(), lambda: IncrementalTranscriber(recognizer))
    ptt.press()
    assert mic.fed.wait(10)
    _wait_for_early(ptt.early)
    audio = ptt.release()
    store = ConversationStore(tmp_path / "c.sqlite3")
    pipeline = VoicePipeline(ChatSession(store, FakeChat("Sure."), "p"), recognizer=recognizer)
    result = pipeline.run_audio_turn(audio, early=ptt.early)
    assert "call me back" in result.user.lower()
    assert recognizer.calls == 1
    assert ptt.early.hit is True


def test_a_press_with_no_speech_closes_the_early_transcriber(tiny_en):
    mic = _Mic(_silence(1.0))
    ptt = PushToTalk(mic, Listener(), lambda: IncrementalTranscriber(Counting(tiny_en)))
    ptt.press()
    assert mic.fed.wait(10)
    with pytest.raises(TalkError, match="No speech"):
        ptt.release()
    assert ptt.early._closed and not ptt.early._worker.is_alive()


def test_hands_free_decodes_during_the_closing_silence(tiny_en, clip):
    recognizer = Counting(tiny_en)
    recording = np.concatenate([_silence(0.5), clip, _silence(1.0)])
    blocks = (recording[i:i + BLOCK] for i in range(0, len(recording), BLOCK))
    heard = []
    for item in Listener().utterances(blocks, early=lambda: IncrementalTranscriber(recognizer)):
        _wait_for_early(item.early)  # a live microphone gives it the closing 0.6 s for this
        heard.append(item)
    assert len(heard) == 1
    transcript = heard[0].early.finish(heard[0].audio)
    assert heard[0].early.hit is True and recognizer.calls == 1
    assert transcript.text == tiny_en.transcribe(heard[0].audio).text
    assert "call me back" in transcript.text.lower()


class _LiveMic(_Mic):
    """Plays in real time, as a device does (the early decode then races the silence)."""

    def blocks(self):
        for start in range(0, len(self.audio), BLOCK):
            if self.stopped.is_set():
                return
            threading.Event().wait(BLOCK / 16000)
            yield self.audio[start:start + BLOCK]
        self.fed.set()
        self.stopped.wait()


def test_the_hands_free_runner_gives_each_turn_its_early_transcript(tiny_en, clip, tmp_path):
    from engine.conversation import ChatSession
    from engine.pipeline import events as ev
    from engine.pipeline.handsfree import HandsFree
    from engine.pipeline.turns import VoicePipeline
    from engine.store import ConversationStore
    from tests.fakes import FakeChat

    recognizer = Counting(tiny_en)
    events = []
    store = ConversationStore(tmp_path / "c.sqlite3")
    pipeline = VoicePipeline(ChatSession(store, FakeChat("Sure."), "p"), recognizer=recognizer,
                             on_event=events.append)
    mic = _LiveMic(np.concatenate([_silence(0.3), clip, _silence(1.2)]))
    runner = HandsFree(pipeline, mic, Listener())
    runner.start()
    assert mic.fed.wait(20)
    pipeline.wait(20)
    runner.stop()
    done = [e for e in events if e.type == ev.TURN_DONE]
    assert len(done) == 1 and "call me back" in done[0].data["user"].lower()
    assert recognizer.calls == 1  # decoded once, during the silence, never again at the end
