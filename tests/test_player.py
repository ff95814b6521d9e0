"""The player on the virtual speaker: order, events once per piece, and stopping at once."""

from __future__ import annotations

import time

import numpy as np
import pytest


@pytest.mark.audio
def test_player_plays_into_the_speaker_and_stops_at_once(pulse):
    from engine.audio.capture import Microphone
    from engine.audio.player import Player

    events = []
    player = Player(on_event=lambda kind, text: events.append((kind, text)))
    mic = Microphone()
    player.start()
    mic.start()
    try:
        next(mic.blocks())  # the microphone is live before anything plays
        t = np.arange(24000 * 4) / 24000
        tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        player.enqueue(tone, 24000, "a long tone")
        time.sleep(0.8)
        before = np.concatenate(mic.drain())
        stop_at = time.monotonic()
        player.stop()
        assert player.wait(0.1)
        stopped_in = time.monotonic() - stop_at
        time.sleep(0.5)
        after = np.concatenate(mic.drain())
    finally:
        mic.stop()
        player.close()
    from engine.audio.frames import dbfs

    assert dbfs(before[-8000:]) > -20  # the tone was playing
    # When did the microphone stop hearing it? (includes the capture path's own latency)
    loud = [i for i in range(0, len(after) - 160, 160) if dbfs(after[i:i + 160]) > -50]
    silent_after_ms = (loud[-1] + 160) / 16 if loud else 0.0
    print(f"stop() returned in {stopped_in * 1000:.1f} ms; sound gone {silent_after_ms:.0f} ms "
          "into the capture after it")
    assert silent_after_ms <= 150  # the 4 s tone was cut, not played out
    assert dbfs(after[int(0.15 * 16000):]) < -60
    assert ("speaking_started", "a long tone") in events
    assert ("speaking_ended", "a long tone") in events


@pytest.mark.audio
def test_player_plays_chunks_in_order_and_reports_each(pulse):
    from engine.audio.player import Player

    events = []
    player = Player(on_event=lambda kind, text: events.append((kind, text)))
    player.start()
    try:
        for name in ("one", "two", "three"):
            player.enqueue(np.full(4800, 0.1, np.float32), 48000, name)
        assert player.wait(5)
        time.sleep(player.latency + 0.1)
    finally:
        player.close()
    assert events == [(k, n) for n in ("one", "two", "three")
                      for k in ("speaking_started", "speaking_ended")]


@pytest.mark.audio
def test_a_piece_streamed_in_chunks_is_reported_once(pulse):
    from engine.audio.player import Player

    events = []
    player = Player(on_event=lambda kind, text: events.append((kind, text)))
    player.start()
    try:
        for i in range(3):  # the TTS hands chunks over as they are decoded
            player.enqueue(np.full(4800, 0.1, np.float32), 48000, "one sentence",
                           starts=i == 0, ends=False)
            time.sleep(0.03)
        player.end_piece("one sentence")
        player.enqueue(np.full(4800, 0.1, np.float32), 48000, "the next")
        assert player.wait(5)
        time.sleep(player.latency + 0.1)
    finally:
        player.close()
    assert events == [("speaking_started", "one sentence"), ("speaking_ended", "one sentence"),
                      ("speaking_started", "the next"), ("speaking_ended", "the next")]


@pytest.mark.audio
def test_stopping_mid_piece_ends_it(pulse):
    from engine.audio.player import Player

    events = []
    player = Player(on_event=lambda kind, text: events.append((kind, text)))
    player.start()
    try:
        player.enqueue(np.full(48000, 0.1, np.float32), 48000, "long", ends=False)
        time.sleep(0.2)
        player.stop()
        time.sleep(0.2)
    finally:
        player.close()
    assert events == [("speaking_started", "long"), ("speaking_ended", "long")]


@pytest.mark.audio
def test_a_chunk_of_a_stopped_turn_is_dropped_even_when_it_comes_after_the_stop(pulse):
    """The TTS thread can pass its own cancel check just before the stop and enqueue after it."""
    from engine.audio.player import Player
    from engine.cancel import CancelToken

    events = []
    player = Player(on_event=lambda kind, text: events.append((kind, text)))
    player.start()
    turn = CancelToken()
    try:
        player.enqueue(np.full(48000, 0.1, np.float32), 48000, "first", ends=False,
                       cancel=turn)
        time.sleep(0.2)
        turn.cancel()  # as a turn stops: its token first, then the player
        player.stop()
        player.enqueue(np.full(48000, 0.1, np.float32), 48000, "first", starts=False,
                       ends=False, cancel=turn)
        player.end_piece("first", cancel=turn)
        assert player.wait(0.05)  # nothing was queued: idle at once, not after 1 s of audio
        time.sleep(0.2)
    finally:
        player.close()
    assert events == [("speaking_started", "first"), ("speaking_ended", "first")]
