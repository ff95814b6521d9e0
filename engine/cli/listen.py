"""``devices``, ``listen`` and ``transcribe``: speech in, from the terminal."""

from __future__ import annotations

import argparse
import sys
import time

from engine.cli.common import print_error
from engine.cli.render import level_bar
from engine.errors import TalkError


def run_audio(args: argparse.Namespace) -> int:
    """Dispatch the speech-in commands."""
    if args.command == "devices":
        return _devices()
    if args.command == "transcribe":
        return _transcribe(args)
    return _listen(args)


def _devices() -> int:
    from engine.audio.capture import input_devices

    devices = input_devices()
    if not devices:
        print("No audio input devices.")
        return 1
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark}{d.index:>3}  {d.name}  ({d.channels} ch, {d.default_rate} Hz)")
    print("* = system default. Pick one with --device NUMBER or part of its name.")
    return 0


def _recognizer(args: argparse.Namespace):
    from engine.asr import open_recognizer

    options = {"device": args.asr_device, "language": args.language}
    if args.model:
        options["model"] = args.model
    print(f"Loading speech recognition ({args.asr}, {args.model or 'default model'})...",
          file=sys.stderr, flush=True)
    return open_recognizer(args.asr, **options)


def _transcribe(args: argparse.Namespace) -> int:
    """Print each file's words; exit 1 when a file failed or no file held speech."""
    from pathlib import Path

    from engine.audio.files import load_audio

    recognizer = _recognizer(args)
    failed = heard = 0
    for name in args.files:
        try:
            audio = load_audio(name)
            transcript = recognizer.transcribe(audio)
        except TalkError as err:
            # load_audio names the file; the recognizer's checks (NaN samples...) do not.
            if Path(name).name not in err.message:
                err = TalkError(f"{name}: {err.message}", hint=err.hint, code=err.code)
            print_error(err)
            failed += 1
            continue
        rtf = transcript.timings["transcribe"] / max(transcript.duration, 1e-6)
        if transcript.text:
            heard += 1
            prefix = f"{name}: " if len(args.files) > 1 else ""
            print(f"{prefix}{transcript.text}", flush=True)
        else:  # stdout stays empty, so a script reading it never takes a placeholder for words
            print(f"{name}: no speech heard", file=sys.stderr)
        print(f"  [{transcript.duration:.1f} s of audio, language {transcript.language or '-'}, "
              f"real-time factor {rtf:.2f}]", file=sys.stderr)
    return 1 if failed or not heard else 0


class _Meter:
    """A one-line level meter on stderr, redrawn at most 20 times a second."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, level: float) -> None:
        now = time.monotonic()
        if now - self.last < 0.05:
            return
        self.last = now
        print(f"\r  level {level:6.1f} dBFS |{level_bar(level):<30}|", end="", file=sys.stderr,
              flush=True)


def _listen(args: argparse.Namespace) -> int:
    """Print what is said at the microphone; exit 1 when nothing was."""
    from engine.audio.capture import Microphone
    from engine.audio.listener import Listener, ListenOptions, PushToTalk

    microphone = Microphone(args.device)  # fails fast with "no microphone" before loading ASR
    recognizer = _recognizer(args)
    meter = _Meter()
    listener = Listener(ListenOptions(sensitivity=args.sensitivity), on_level=meter)
    heard = False
    if args.hands_free:
        microphone.start()
        print("Listening (hands-free). Speak; Ctrl-C stops.", file=sys.stderr, flush=True)
        try:
            for utterance in listener.hands_free(microphone.blocks()):
                print("\r" + " " * 50 + "\r", end="", file=sys.stderr)
                try:
                    heard |= _say(recognizer.transcribe(utterance).text)
                except TalkError as err:
                    print_error(err)
                if args.once:
                    break
        except KeyboardInterrupt:
            print(file=sys.stderr)
        finally:
            microphone.stop()
        return 0 if heard else 1
    ptt = PushToTalk(microphone, listener)
    while True:
        try:
            input("Press Enter and speak; Enter again to stop (Ctrl-D quits). ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0 if heard else 1
        ptt.press()
        try:
            input()
        except (EOFError, KeyboardInterrupt):
            pass
        print("\r" + " " * 50 + "\r", end="", file=sys.stderr)
        try:
            audio = ptt.release()
            if ptt.error is not None:
                print_error(ptt.error)
            heard |= _say(recognizer.transcribe(audio).text)
        except TalkError as err:
            print_error(err)
        if args.once:
            return 0 if heard else 1


def _say(text: str) -> bool:
    """Print the words on stdout, or say on stderr that there were none; True if words."""
    if text:
        print(f"you said: {text}", flush=True)
    else:
        print("no speech heard", file=sys.stderr, flush=True)
    return bool(text)
