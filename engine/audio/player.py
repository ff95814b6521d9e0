"""Playing synthesised audio: a sounddevice output stream fed from a queue, interruptible.

``enqueue`` adds chunks (resampled to the device's rate); the stream's callback copies from the
queue and nothing else. ``stop`` empties the queue; the callback then writes silence from its
next block, so sound stops within one block (20 ms). A *piece* (a sentence) may arrive as many
chunks while it is still being synthesised: its first chunk opens it (``starts``) and
``end_piece`` (or ``ends``) closes it, and "speaking started/ended" is reported once per piece,
from a small dispatcher thread, never from the audio callback.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.audio.capture import load_sounddevice
from engine.audio.convert import resample
from engine.cancel import CancelToken
from engine.errors import TalkError

BLOCK_S = 0.02  # output block: the longest stop() waits before silence


class PlaybackError(TalkError):
    """The speaker could not be opened or failed."""

    code = "playback_failed"


def output_devices() -> list[tuple[int, str, bool]]:
    """(index, name, is_default) of every device with output channels."""
    sd = load_sounddevice()
    default = sd.default.device[1]
    return [(i, d["name"], i == default) for i, d in enumerate(sd.query_devices())
            if d["max_output_channels"] > 0]


PieceListener = Callable[[str, str], None]  # (kind, text): "speaking_started"/"speaking_ended"


class Player:
    """Plays chunks in order on one output device; :meth:`stop` interrupts."""

    def __init__(self, device: int | str | None = None,
                 on_event: PieceListener | None = None):
        self.device = device
        self.on_event = on_event or (lambda kind, text: None)  # pieces queued without a listener
        # (audio, text, starts a piece, its listener); audio None marks the end of a piece.
        self._chunks: deque[tuple[np.ndarray | None, str, bool, PieceListener]] = deque()
        self._current: tuple[np.ndarray, str] | None = None
        # The piece being heard (started, not yet ended) and who hears about it.
        self._open: tuple[str, PieceListener] | None = None
        self._pos = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._events: queue.Queue[tuple[PieceListener, str, str] | None] = queue.Queue()
        self._stream: Any = None
        self._dispatcher: threading.Thread | None = None
        self.rate = 0

    def start(self) -> None:
        """Open the output device."""
        sd = load_sounddevice()
        if not output_devices():
            raise PlaybackError("No speaker found: the system lists no audio output device.",
                                code="no_speaker")
        device = self.device
        if isinstance(device, str) and not device.isdigit():
            matches = [i for i, name, _ in output_devices() if device.lower() in name.lower()]
            if not matches:
                raise PlaybackError(f"No output device named like {device!r}.",
                                    code="device_not_found")
            device = matches[0]
        try:
            info = sd.query_devices(device if device is not None else sd.default.device[1],
                                    "output")
            self.rate = int(info["default_samplerate"])
            self._stream = sd.OutputStream(device=device, samplerate=self.rate, channels=1,
                                           dtype="float32", blocksize=int(self.rate * BLOCK_S),
                                           callback=self._callback)
            self._stream.start()
        except sd.PortAudioError as err:
            raise PlaybackError(f"Could not open the speaker: {err}") from err
        self._dispatcher = threading.Thread(target=self._dispatch, name="player-events",
                                            daemon=True)
        self._dispatcher.start()

    def enqueue(self, samples: np.ndarray, rate: int, text: str = "", *, starts: bool = True,
                ends: bool = True, listener: PieceListener | None = None,
                cancel: CancelToken | None = None) -> None:
        """Queue mono float32 audio at ``rate`` to play after what is queued.

        By default the chunk is a whole piece. A piece streamed in chunks passes
        ``starts=True, ends=False`` with its first chunk, ``starts=False, ends=False`` with the
        rest, then calls :meth:`end_piece`. ``listener`` (given with the piece's first chunk)
        hears ``("speaking_started" | "speaking_ended", text)`` for that piece: the turn that
        queued it, so a late event of an interrupted turn never reaches the next one.
        ``cancel``: the turn's token. A chunk whose turn is cancelled is dropped, checked under
        the lock that :meth:`stop` clears the queue under: a turn cancels before it stops the
        player, so a chunk the TTS hands over just after the stop is never heard.
        """
        audio = resample(np.asarray(samples, dtype=np.float32), rate, self.rate)
        with self._lock:
            if cancel is not None and cancel.cancelled:
                return
            self._chunks.append((audio, text, starts, listener or self.on_event))
            if ends:
                self._chunks.append((None, text, False, self.on_event))
            self._idle.clear()

    def end_piece(self, text: str = "", cancel: CancelToken | None = None) -> None:
        """Close the piece being queued: "speaking ended" comes once its audio has played."""
        with self._lock:
            if cancel is not None and cancel.cancelled:
                return  # stop() ended the piece already
            self._chunks.append((None, text, False, self.on_event))
            self._idle.clear()

    @property
    def latency(self) -> float:
        """Seconds between a block leaving the callback and it being heard."""
        return float(self._stream.latency) + BLOCK_S if self._stream is not None else 0.0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything queued has played (or was stopped); False on timeout."""
        return self._idle.wait(timeout)

    def stop(self) -> None:
        """Stop at once: drop the queue and the chunk playing."""
        with self._lock:
            interrupted, self._open = self._open, None
            self._chunks.clear()
            self._current = None
            self._idle.set()
        if interrupted is not None:
            text, listener = interrupted
            self._events.put((listener, "speaking_ended", text))

    def close(self) -> None:
        """Stop and release the device."""
        self.stop()
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # a vanished device may fail to close; nothing to save
                pass
        if self._dispatcher is not None:
            self._events.put(None)
            self._dispatcher.join()
            self._dispatcher = None

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        out = outdata[:, 0]
        filled = 0
        with self._lock:
            while filled < frames:
                if self._current is None:
                    if not self._chunks:
                        break
                    chunk, text, starts, listener = self._chunks.popleft()
                    if chunk is None:  # the piece is over
                        if self._open is not None:
                            ended, to = self._open
                            self._events.put((to, "speaking_ended", ended))
                            self._open = None
                        continue
                    if starts:
                        self._open = (text, listener)
                        self._events.put((listener, "speaking_started", text))
                    self._current, self._pos = (chunk, text), 0
                audio = self._current[0]
                n = min(frames - filled, len(audio) - self._pos)
                out[filled:filled + n] = audio[self._pos:self._pos + n]
                filled += n
                self._pos += n
                if self._pos >= len(audio):
                    self._current = None
            out[filled:] = 0
            if self._current is None and not self._chunks:
                self._idle.set()

    def _dispatch(self) -> None:
        while (event := self._events.get()) is not None:
            listener, kind, text = event
            try:
                listener(kind, text)
            except Exception:  # a listener's bug must not kill playback events
                pass


def play_blocking(samples: np.ndarray, rate: int, device: int | str | None = None) -> float:
    """Play once and wait; returns seconds played. For previews and ``say``."""
    player = Player(device)
    player.start()
    try:
        started = time.perf_counter()
        player.enqueue(samples, rate)
        player.wait()
        time.sleep(player.latency)  # the last block is still in the device's buffer
        return time.perf_counter() - started
    finally:
        player.close()
