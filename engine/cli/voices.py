"""``voices`` and ``say``: enrol voices, check them, hear them."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from engine.cli.common import print_error
from engine.cli.render import level_bar
from engine.voices import store
from engine.voices.passages import READ_ALOUD


def run_voices(args: argparse.Namespace) -> int:
    """Dispatch ``voices ACTION`` and ``say``."""
    if args.command == "say":
        return _say(args)
    action = args.voices_command
    if action == "list":
        return _list()
    if action == "add":
        return _add(args)
    if action == "rename":
        voice = store.rename(args.name, args.new_name)
        print(f"Renamed to {voice.name}.")
    elif action == "delete":
        voice = store.delete(args.name)
        print(f"Deleted the voice {voice.name}.")
    elif action == "export":
        path = store.export(args.name, Path(args.file))
        print(f"Exported to {path}.")
    elif action == "import":
        voice = store.import_archive(Path(args.file))
        print(f"Imported the voice {voice.name}: {voice.consent_line()}.")
    elif action == "preview":
        return _preview(args)
    elif action == "pair":
        from engine.models.registry import find_persona
        from engine.tts.builtin import find_any_voice
        from engine.voices.pairing import pair

        persona = find_persona(args.persona)
        voice = find_any_voice(args.voice)  # it must exist: an error names what is missing
        pair(persona.id, args.voice)
        print(f"{persona.label} now speaks in {getattr(voice, 'label', None) or voice.name} "
              f"(chat --speak, talk and the window). Undo: talk-to-transformers voices unpair "
              f"{persona.id}")
    elif action == "unpair":
        from engine.models.registry import find_persona
        from engine.voices.pairing import pair

        persona = find_persona(args.persona)
        pair(persona.id, None)
        print(f"{persona.label} speaks in "
              f"{persona.default_voice or 'the default voice'} again.")
    elif action == "play":
        voice = store.find_voice(args.name)
        audio, rate = voice.sample()
        print(f"Playing the sample of {voice.name} ({len(audio) / rate:.1f} s, as enrolled).")
        _speak(audio, rate, args)
    return 0


def _list() -> int:
    voices, broken = store.list_voices()
    if not voices and not broken:
        print("No voices yet. Enroll one: talk-to-transformers voices add NAME --record 10s")
    for voice in voices:
        when = datetime.fromtimestamp(voice.created).strftime("%Y-%m-%d")
        flag = " [flagged]" if voice.flagged else ""
        sim = f"  similarity {voice.similarity:.2f}" if voice.similarity is not None else ""
        print(f"  {voice.name:<24} {when}  {voice.verdict.get('summary', '')}{flag}{sim}")
        print(f"  {'':<24} {voice.consent_line()}")
    for err in broken:
        print(f"  (damaged) {err.message}")
    return 0


def _encoder():
    from engine.voices.encoder import SpeakerEncoder

    return SpeakerEncoder()


def _record(seconds: float, device: str | None) -> np.ndarray:
    from engine.audio.capture import Microphone
    from engine.audio.frames import dbfs
    from engine.audio.recording import record

    mic = Microphone(device)
    print("Read this aloud when the countdown ends:\n\n  " + READ_ALOUD + "\n")
    for n in (3, 2, 1):
        print(f"  {n}...", flush=True)
        time.sleep(1)

    def shown(block: np.ndarray, done: float) -> None:
        print(f"\r  recording {max(seconds - done, 0):4.1f} s |{level_bar(dbfs(block)):<30}|",
              end="", flush=True)

    try:
        recording = record(mic, seconds, on_block=shown)
    finally:
        print()
    if recording.lost is not None:  # keep what came before; the checks judge it
        print_error(recording.lost)
    return recording.audio


def _consent(args: argparse.Namespace) -> str:
    """Who confirms the consent statement: --consent, or asked for on a terminal."""
    from engine.errors import ConfigError

    if args.consent and args.consent.strip():
        return args.consent.strip()
    if sys.stdin.isatty():
        print(f"Pocket TTS's terms forbid cloning a voice without its speaker's consent.\n"
              f"  \"{store.CONSENT_STATEMENT}\"")
        who = input("Type your name to confirm (empty: cancel): ").strip()
        if who:
            return who
    raise ConfigError("Not enrolled: cloning a voice needs its speaker's consent.",
                      hint=f"Confirm \"{store.CONSENT_STATEMENT}\" with --consent \"YOUR "
                           "NAME\".", code="consent_missing")


def _add(args: argparse.Namespace) -> int:
    consent = _consent(args)  # before recording: nothing is captured without it
    if args.file:
        from engine.audio.files import load_audio

        audio, source = load_audio(args.file), Path(args.file).name
    else:
        audio, source = _record(args.record, args.device), "recording"
    try:
        voice, verdict = store.enroll(args.name, audio, 16000, source=source,
                                      encoder=_encoder(), force=args.keep_anyway,
                                      consent=consent)
    except store.VoiceQualityError as err:
        _print_checks(err.verdict)
        print(f"error: {err.message}\n  Record again, or add --keep-anyway to keep it flagged.",
              file=sys.stderr)
        return 1
    _print_checks(verdict)
    flag = " (flagged: it failed a check)" if voice.flagged else ""
    print(f"Enrolled the voice {voice.name}{flag}. Hear it: talk-to-transformers voices preview "
          f"{voice.id!r}")
    return 0


def _print_checks(verdict) -> None:
    for check in verdict.checks:
        mark = "BAD" if not check.ok else "NOTE" if check.note else "ok "
        print(f"  {mark:<4} {check.name:<12} {check.message}")


def _tts(args: argparse.Namespace):
    from engine.tts.pocket import PocketTTS

    print("Loading the voice model...", file=sys.stderr, flush=True)
    return PocketTTS(args.tts_model, device=args.tts_device)


def _speak(samples: np.ndarray, rate: int, args: argparse.Namespace) -> None:
    from engine.audio.player import play_blocking

    play_blocking(samples, rate, args.speaker_device)


def _preview(args: argparse.Namespace) -> int:
    from engine.audio.convert import resample
    from engine.voices.encoder import similarity

    voice = store.find_voice(args.name)
    tts = _tts(args)
    chunks = list(tts.synthesize(args.text, voice))
    audio = np.concatenate([c.samples for c in chunks])
    score = similarity(_encoder().embed(resample(audio, tts.rate, 16000)), voice.embedding())
    store.update_info(voice, similarity=round(score, 3))
    print(f"Speaker similarity of the clone to the sample: {score:.2f} (1.0 = identical)")
    _speak(audio, tts.rate, args)
    return 0


def _say(args: argparse.Namespace) -> int:
    from engine.tts.builtin import find_any_voice
    from engine.tts.text import normalise

    voice = find_any_voice(args.voice)
    if voice is None:
        print("Speaking in the default built-in voice (alba); choose one with --voice.",
              file=sys.stderr)
    if not normalise(args.text):
        print("Nothing to say: the text has no speakable words.", file=sys.stderr)
        return 1
    from engine.cli.chat import ready_voice

    tts = _tts(args)
    voice = ready_voice(tts, voice, sys.stderr)  # as chat and talk: say why, speak anyway
    if args.output:
        import soundfile as sf

        audio = np.concatenate([c.samples for c in tts.synthesize(args.text, voice)])
        sf.write(args.output, audio, tts.rate)
        print(f"Wrote {args.output} ({len(audio) / tts.rate:.1f} s).")
        return 0
    from engine.audio.player import Player

    # Streamed: each chunk plays as soon as it is decoded, while the rest is generated.
    player = Player(args.speaker_device)
    player.start()
    try:
        for i, chunk in enumerate(tts.synthesize(args.text, voice)):
            player.enqueue(chunk.samples, chunk.rate, chunk.text, starts=i == 0, ends=False)
        player.end_piece(args.text)
        player.wait()
        time.sleep(player.latency)  # the last block is still in the device's buffer
    finally:
        player.close()
    return 0
