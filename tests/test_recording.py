"""engine.audio.recording: N seconds counted in samples, cancel, and a microphone lost midway."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audio.capture import CaptureError
from engine.audio.filesource import FileMicrophone
from engine.audio.recording import record
from engine.cancel import CancelToken


def test_records_exactly_the_seconds_asked_counting_samples_not_the_clock():
    mic = FileMicrophone(np.full(16000 * 5, 0.1, np.float32), speed=50.0)  # 50x real time
    seen = []
    recording = record(mic, 2.0, on_block=lambda block, done: seen.append(done))
    assert len(recording.audio) == 32000 and recording.lost is None
    assert seen == sorted(seen) and seen[-1] >= 2.0


def test_cancel_ends_with_what_was_recorded():
    cancel = CancelToken()
    mic = FileMicrophone(np.full(16000 * 5, 0.1, np.float32), speed=50.0)

    def stop_after_half_a_second(_block, done):
        if done >= 0.5:
            cancel.cancel()

    recording = record(mic, 4.0, on_block=stop_after_half_a_second, cancel=cancel)
    assert 8000 <= len(recording.audio) < 64000


class Vanishing:
    """Gives two blocks, then the device disappears."""

    def start(self):
        pass

    def stop(self):
        pass

    def blocks(self):
        yield np.zeros(1600, np.float32)
        yield np.zeros(1600, np.float32)
        raise CaptureError("The microphone was unplugged.", code="device_lost")


def test_a_microphone_lost_midway_keeps_what_came_before():
    recording = record(Vanishing(), 3.0)
    assert len(recording.audio) == 3200
    assert recording.lost is not None and recording.lost.code == "device_lost"


def test_a_microphone_that_never_opens_raises():
    class Dead(Vanishing):
        def start(self):
            raise CaptureError("No microphone found.", code="no_microphone")

    with pytest.raises(CaptureError, match="No microphone found"):
        record(Dead(), 1.0)
