"""A private PulseAudio server with a virtual speaker (null sink) and microphone (its monitor).

Started per test session for the ``audio`` tests. PortAudio must see the server when it
initialises, so sounddevice is re-initialised after the server starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name=vsink rate=48000
load-module module-remap-source master=vsink.monitor source_name=vmic
set-default-sink vsink
set-default-source vmic
"""


class PulseServer:
    """Start, address and stop a private PulseAudio server."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.socket = folder / "native"
        self.env = {"PULSE_SERVER": f"unix:{self.socket}", "PULSE_RUNTIME_PATH": str(folder),
                    "PULSE_STATE_PATH": str(folder), "PULSE_COOKIE": str(folder / "cookie")}
        self._keepalive: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        """Whether the PulseAudio binaries are installed."""
        return all(shutil.which(tool) for tool in ("pulseaudio", "pactl", "pacat", "paplay"))

    def start(self) -> None:
        """Run the server, and keep a silent stream playing into the sink.

        An idle null sink does not stream its monitor: the first capture block would come
        after ~2 s and lose the start of the audio.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "server.pa"
        config.write_text(CONFIG.format(socket=self.socket))
        os.environ.update(self.env)
        subprocess.run(["pulseaudio", "-n", "-F", str(config), "--exit-idle-time=-1",
                        "--daemonize=yes", "--log-target=stderr"], check=True,
                       capture_output=True, env={**os.environ})
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("PulseAudio did not start")
            time.sleep(0.1)
        self._keepalive = subprocess.Popen(
            ["pacat", "--playback", "--device=vsink", "--latency-msec=20", "--raw",
             "--format=s16le", "--rate=48000", "--channels=2"],
            stdin=open("/dev/zero", "rb"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_for_monitor()
        self._reinit_portaudio()

    def _wait_for_monitor(self, timeout: float = 10.0) -> None:
        """Block until the virtual microphone delivers audio (the keep-alive is flowing)."""
        recorder = subprocess.Popen(["parec", "--device=vmic", "--raw", "--latency-msec=20"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        timer = threading.Timer(timeout, recorder.kill)
        timer.start()
        try:
            recorder.stdout.read(4096)
        finally:
            timer.cancel()
            recorder.kill()
            recorder.wait()
            recorder.stdout.close()

    def play(self, wav: Path) -> subprocess.Popen:
        """Play a file into the virtual speaker (what the virtual microphone hears)."""
        return subprocess.Popen(["paplay", "--device=vsink", str(wav)])

    def play_when_ready(self, proc: subprocess.Popen, wav: Path, *, marker: str,
                        stream: str = "stdout", delay: float = 0.3,
                        timeout: float = 120) -> tuple[str, str]:
        """Play ``wav`` once ``proc`` prints ``marker`` on ``stream``; then its (stdout, stderr).

        ``delay`` is the pause after the marker before the "person" starts talking.
        """
        try:
            pipe = getattr(proc, stream)
            line = ""
            while marker not in line:
                line = pipe.readline()
                assert line, f"the process exited before {marker!r}: {proc.stderr.read()}"
            time.sleep(delay)
            self.play(wav).wait(timeout=30)
            return proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    def stop(self) -> None:
        """Stop the keep-alive stream and the server."""
        if self._keepalive is not None:
            self._keepalive.kill()
            self._keepalive.wait()
            self._keepalive.stdin and self._keepalive.stdin.close()
        subprocess.run(["pactl", "exit"], capture_output=True)
        for key in self.env:
            os.environ.pop(key, None)

    @staticmethod
    def _reinit_portaudio() -> None:
        import sys

        sd = sys.modules.get("sounddevice")
        if sd is not None:  # imported before the server ran: rescan devices
            sd._terminate()
            sd._initialize()
