"""The hands-free segmenter and the frame slicer: pure logic, booleans and arrays."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio.frames import FrameSlicer, dbfs, to_pcm16
from engine.audio.segmenter import Boundary, Segmenter, SegmenterOptions

FRAME = 0.03


def run(segmenter: Segmenter, pattern: str) -> list[tuple[int, Boundary]]:
    """Feed a pattern of 's' (speech) and '.' (silence) frames; return (index, event)."""
    events = []
    for i, mark in enumerate(pattern):
        event = segmenter.process(FRAME, mark == "s")
        if event is not Boundary.NONE:
            events.append((i, event))
    return events


def test_speech_starts_after_start_s_and_ends_after_end_s():
    seg = Segmenter(SegmenterOptions(start_s=0.09, end_s=0.15))
    events = run(seg, "..." + "s" * 10 + "." * 6)
    assert events == [(5, Boundary.STARTED), (17, Boundary.ENDED)]  # 3rd voiced frame; 5th silent
    assert not seg.in_speech and not seg.timed_out


def test_short_pauses_inside_speech_do_not_end_it():
    seg = Segmenter(SegmenterOptions(start_s=0.06, end_s=0.15))
    events = run(seg, "ss" + "s..s..s...s" + "." * 5)
    assert [e for _, e in events] == [Boundary.STARTED, Boundary.ENDED]


def test_a_click_does_not_start_speech():
    seg = Segmenter(SegmenterOptions(start_s=0.09, reset_s=0.06))
    assert run(seg, "s..s..s.." * 3) == []


def test_brief_gap_before_start_keeps_the_run():
    seg = Segmenter(SegmenterOptions(start_s=0.09, reset_s=0.06))
    assert [e for _, e in run(seg, "ss.s")] == [Boundary.STARTED]


def test_max_length_cuts_and_says_so():
    seg = Segmenter(SegmenterOptions(start_s=0.03, end_s=1.0, max_s=0.3))
    events = run(seg, "s" * 30)
    assert events[0] == (0, Boundary.STARTED)
    assert events[1][1] is Boundary.ENDED and events[1][0] == 9
    assert seg.timed_out
    assert [e for _, e in events].count(Boundary.STARTED) == 3  # continues as new utterances


@pytest.mark.parametrize("kwargs", [{"start_s": -1}, {"max_s": 0.1, "start_s": 0.2}])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ValueError):
        SegmenterOptions(**kwargs)


def test_slicer_cuts_odd_blocks_into_exact_frames():
    audio = np.arange(16000, dtype=np.float32)
    slicer = FrameSlicer(30, 16000)
    frames, start = [], 0
    for size in (100, 1000, 7, 4000, 10893):  # 16000 samples in awkward blocks
        frames += slicer.push(audio[start:start + size])
        start += size
    assert all(f.size == 480 for f in frames)
    assert len(frames) == 16000 // 480 and slicer.pending_samples == 16000 % 480
    assert np.array_equal(np.concatenate(frames), audio[: len(frames) * 480])


def test_slicer_refuses_frames_webrtcvad_cannot_take():
    with pytest.raises(ValueError):
        FrameSlicer(25)


def test_pcm16_and_dbfs():
    assert to_pcm16(np.array([1.5, -1.5, 0.0], dtype=np.float32)) == (
        np.array([32767, -32767, 0], dtype="<i2").tobytes())
    assert dbfs(np.zeros(100, dtype=np.float32)) == -100.0
    sine = np.sin(np.linspace(0, 200 * np.pi, 16000)).astype(np.float32)
    assert dbfs(sine) == pytest.approx(-3.01, abs=0.05)
