"""Microphone capture with sounddevice: the callback only copies blocks onto a queue.

Blocks come out as 16 kHz mono float32 whatever the device gives. Errors a user meets (no
input device, device busy, unplugged mid-recording, PortAudio missing) raise
:class:`CaptureError` with a code and a message that says what to do.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.audio.convert import SAMPLE_RATE, to_mono_16k
from engine.errors import TalkError

BLOCK_S = 0.03  # seconds per device block: one VAD frame at 16 kHz
LOST_AFTER_S = 2.0  # no block for this long while recording: the device is gone


class CaptureError(TalkError):
    """The microphone could not be opened or stopped delivering audio."""

    code = "capture_failed"


@dataclass(frozen=True)
class InputDevice:
    """An audio input as PortAudio lists it."""

    index: int
    name: str
    channels: int
    default_rate: int
    is_default: bool


def load_sounddevice() -> Any:
    """The sounddevice module (imported on first use: PortAudio loads with it)."""
    try:
        import sounddevice
    except OSError as err:  # the Python package is there, the PortAudio library is not
        raise CaptureError(
            "PortAudio, the sound library, is not installed.",
            hint="sudo apt-get install libportaudio2", code="portaudio_missing") from err
    return sounddevice


def input_devices() -> list[InputDevice]:
    """Every device with input channels."""
    sd = load_sounddevice()
    default = sd.default.device[0]
    return [InputDevice(i, d["name"], d["max_input_channels"], int(d["default_samplerate"]),
                        i == default)
            for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def resolve_input(device: str | int | None) -> int | None:
    """A device index from an index, a (part of a) name, or None for the system default."""
    devices = input_devices()
    if not devices:
        raise CaptureError("No microphone found: the system lists no audio input device.",
                           hint="Plug in a microphone, or check that the sound server "
                                "(PulseAudio/PipeWire) is running.", code="no_microphone")
    if device is None or device == "":
        return None
    if isinstance(device, int) or str(device).isdigit():
        index = int(device)
        if index not in {d.index for d in devices}:
            raise CaptureError(f"No input device number {index}.",
                               hint="List them: talk-to-transformers devices",
                               code="device_not_found")
        return index
    matches = [d for d in devices if str(device).lower() in d.name.lower()]
    if not matches:
        raise CaptureError(f"No input device named like {device!r}.",
                           hint="List them: talk-to-transformers devices",
                           code="device_not_found")
    return matches[0].index


class Microphone:
    """Records from an input device; iterate :meth:`blocks` while it is started."""

    def __init__(self, device: str | int | None = None):
        self.device = resolve_input(device)
        self._queue: queue.Queue[np.ndarray] = queue.Queue()
        self._stream: Any = None
        self._rate = SAMPLE_RATE
        self.overflows = 0

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        # Runs on PortAudio's thread: copy and hand over, nothing else.
        if status and status.input_overflow:
            self.overflows += 1
        self._queue.put(indata.copy())

    def start(self) -> None:
        """Open the device and start recording."""
        sd = load_sounddevice()
        info = sd.query_devices(self.device, "input") if self.device is not None else None
        channels = 1
        try:
            # Ask for 16 kHz mono: sound servers convert; raw hardware may refuse, then
            # record at the device's own rate and convert here.
            try:
                self._open(sd, SAMPLE_RATE, channels)
            except sd.PortAudioError as err:
                if "sample rate" not in str(err).lower():
                    raise
                info = info or sd.query_devices(sd.default.device[0], "input")
                channels = min(2, int(info["max_input_channels"]))
                self._open(sd, int(info["default_samplerate"]), channels)
        except sd.PortAudioError as err:
            raise _classify(err) from err

    def _open(self, sd: Any, rate: int, channels: int) -> None:
        self._rate = rate
        self._stream = sd.InputStream(device=self.device, samplerate=rate, channels=channels,
                                      dtype="float32", blocksize=int(rate * BLOCK_S),
                                      callback=self._callback)
        self._stream.start()

    def blocks(self) -> Iterator[np.ndarray]:
        """16 kHz mono blocks until :meth:`stop`; raises CaptureError if the device vanishes."""
        while self._stream is not None:
            try:
                block = self._queue.get(timeout=LOST_AFTER_S)
            except queue.Empty:
                if self._stream is None:
                    return
                raise CaptureError(
                    "The microphone stopped delivering audio (unplugged?). What was recorded "
                    "so far is kept.", hint="Check the device, then try again.",
                    code="device_lost") from None
            yield to_mono_16k(block, self._rate)

    def drain(self) -> list[np.ndarray]:
        """Blocks already captured and not yet read."""
        out = []
        while True:
            try:
                out.append(to_mono_16k(self._queue.get_nowait(), self._rate))
            except queue.Empty:
                return out

    def stop(self) -> None:
        """Stop recording and close the device (safe to call twice)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # a vanished device may fail to close; nothing to keep there
                pass


def _classify(err: Exception) -> CaptureError:
    text = str(err)
    if "-1" in text or "no default" in text.lower():
        return CaptureError("No microphone found: there is no default input device.",
                            hint="Plug in a microphone, or check that the sound server "
                                 "(PulseAudio/PipeWire) is running.", code="no_microphone")
    if "unavailable" in text.lower() or "busy" in text.lower():
        return CaptureError("The microphone is busy: another program is using it.",
                            hint="Close the other program, or pick another device.",
                            code="device_busy")
    return CaptureError(f"Could not open the microphone: {text}", code="capture_failed")
