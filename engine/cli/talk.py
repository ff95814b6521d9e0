"""``talk``: a spoken conversation in the terminal.

Push-to-talk: press Enter, speak, press Enter again (or type a message and press Enter).
Hands-free (``--hands-free``): just speak; the voice detector hears when you stop. Enter or
speaking (hands-free with headphones) while the assistant talks interrupts it.
"""

from __future__ import annotations

import argparse
import sys
import time

from engine import paths
from engine.cli.common import decoding_overrides, print_error
from engine.cli.render import EventPrinter
from engine.errors import TalkError
from engine.pipeline import events as ev
from engine.store import ConversationStore


def run_talk(args: argparse.Namespace) -> int:
    """Load everything, then converse until Ctrl-D / Ctrl-C at the prompt."""
    from transformers.utils import logging as hf_logging

    from engine.asr import open_recognizer
    from engine.asr.incremental import IncrementalTranscriber
    from engine.audio.capture import Microphone
    from engine.audio.listener import Listener, ListenOptions, PushToTalk
    from engine.chat import open_backend
    from engine.cli.chat import voice_output
    from engine.conversation import ChatSession
    from engine.models.registry import find_persona
    from engine.pipeline.turns import VoicePipeline

    hf_logging.disable_progress_bar()
    persona = find_persona(args.persona)
    microphone = Microphone(args.device)  # "no microphone" before any slow loading
    print(f"Loading {persona.label}, speech recognition and the voice model...", flush=True)
    backend = open_backend(persona, remote=args.remote, device=args.device_model,
                           api=args.remote_api, model=args.remote_model,
                           **decoding_overrides(args))
    recognizer = open_recognizer(args.asr, device=args.asr_device, language=args.language,
                                 **({"model": args.model} if args.model else {}))
    voice_out = voice_output(args, persona, sys.stdout)
    tts, player, voice = voice_out if voice_out else (None, None, None)
    store = ConversationStore(paths.conversations_db())
    renderer = EventPrinter()
    session = ChatSession(store, backend, persona.id,
                          store.latest_conversation() if args.resume else None)
    pipeline = VoicePipeline(session, recognizer=recognizer, tts=tts, player=player,
                             voice=voice, on_event=renderer)
    listener = Listener(ListenOptions(sensitivity=args.sensitivity),
                        on_level=lambda level: pipeline.emit(ev.LEVEL, dbfs=level))
    try:
        if args.hands_free:
            return _hands_free(pipeline, microphone, listener, args.headphones)
        return _push_to_talk(pipeline, PushToTalk(
            microphone, listener, lambda: IncrementalTranscriber(
                recognizer, gate=pipeline.gate, options=listener.options)))
    finally:
        pipeline.close()
        if player is not None:
            player.close()
        store.close()


def _push_to_talk(pipeline, ptt) -> int:
    print("Press Enter and speak, Enter again when done; or type a message. Ctrl-D leaves.")
    while True:
        try:
            line = input("talk> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if pipeline.busy:
            pipeline.barge_in("you started talking")
            pipeline.wait()
        if line:
            run = pipeline.start_text_turn(line)
        else:
            ptt.press()
            print("  listening... press Enter when done", flush=True)
            try:
                input()
            except (EOFError, KeyboardInterrupt):
                pass
            try:
                audio = ptt.release()
            except TalkError as err:
                print_error(err)
                continue
            if ptt.error is not None:
                print_error(ptt.error)
            pipeline.emit(ev.SPEECH_ENDED)
            run = pipeline.start_audio_turn(audio, time.perf_counter(), early=ptt.early)
        try:
            while not run.wait(0.1):
                pass  # Enter during the turn is read by the next prompt: it interrupts
        except KeyboardInterrupt:
            run.stop("Ctrl-C")
            run.wait()


def _hands_free(pipeline, microphone, listener, headphones: bool) -> int:
    from engine.pipeline.handsfree import HandsFree

    runner = HandsFree(pipeline, microphone, listener, headphones=headphones,
                       on_error=print_error)
    microphone.start()
    pipeline.emit(ev.LISTENING)
    print("Listening hands-free. Speak; Ctrl-C leaves.", flush=True)
    try:
        runner.run()  # on this thread: Ctrl-C reaches it
    except KeyboardInterrupt:
        print()
    finally:
        microphone.stop()
    return 0
