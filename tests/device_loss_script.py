"""Run as a script by test_capture: its own PulseAudio server dies mid-recording.

Prints the capture error code and how many seconds of audio were kept.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.audio.capture import Microphone  # noqa: E402
from engine.audio.listener import Listener, PushToTalk  # noqa: E402
from tests.pulse import PulseServer  # noqa: E402
from tests.speech import speak  # noqa: E402

folder = Path(tempfile.mkdtemp())
atexit.register(shutil.rmtree, folder, ignore_errors=True)
server = PulseServer(folder / "pulse")
server.start()
ptt = PushToTalk(Microphone(), Listener())
ptt.press()
server.play(speak("Hello there, testing the microphone.", folder, rate=48000,
                  channels=2)).wait(timeout=30)
subprocess.run(["pactl", "exit"], check=True)  # the sound server (the "device") is gone
time.sleep(3)
audio = ptt.release()
print(ptt.error.code if ptt.error else "no error", f"{len(audio) / 16000:.2f}")
