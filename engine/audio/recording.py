"""Record N seconds from a microphone: the one loop behind enrolment, the mic test and the CLI.

Time is counted in samples received, not on the clock, so a faster-than-real-time source (a
file standing in for the microphone) records the same audio a live one would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.audio.capture import CaptureError
from engine.audio.frames import SAMPLE_RATE
from engine.errors import TalkError


@dataclass(frozen=True)
class Recording:
    """What was recorded."""

    audio: np.ndarray  # 16 kHz mono float32
    lost: TalkError | None = None  # the microphone vanished midway; ``audio`` is what came before


def record(microphone: Any, seconds: float, *,
           on_block: Callable[[np.ndarray, float], None] | None = None,
           cancel: Any = None) -> Recording:
    """Record ``seconds`` (less if ``cancel`` is cancelled) from an unstarted ``microphone``.

    Args:
        microphone: start / blocks / stop (engine.audio.capture.Microphone or a stand-in).
        seconds: how much to record.
        on_block: called with each block and the seconds recorded so far.
        cancel: a CancelToken; once cancelled, recording ends with what it has.

    Raises:
        CaptureError: the microphone could not be opened, or gave nothing before vanishing.

    """
    wanted = int(seconds * SAMPLE_RATE)
    blocks: list[np.ndarray] = []
    received, lost = 0, None
    try:
        microphone.start()
        for block in microphone.blocks():
            blocks.append(block)
            received += len(block)
            if on_block is not None:
                on_block(block, received / SAMPLE_RATE)
            if received >= wanted or (cancel is not None and cancel.cancelled):
                break
    except CaptureError as err:
        if not blocks:
            raise
        lost = err  # keep what was recorded; the caller judges whether it is enough
    finally:
        microphone.stop()
    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return Recording(audio[:wanted], lost)
