"""``chat``: a typed conversation in the terminal, replies streamed as they are generated.

Commands inside the chat: /new, /history [ID], /persona [P], /help, /quit. Ctrl-C while a reply
streams stops that reply (what was shown is kept, marked cut); Ctrl-C or Ctrl-D at the prompt
leaves.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import TextIO

from engine import paths
from engine.chat import open_backend
from engine.cli.common import decoding_overrides, print_error
from engine.conversation import ChatSession
from engine.errors import TalkError
from engine.models.persona import Persona
from engine.models.registry import find_persona
from engine.store import ConversationStore

HELP = """\
Type a message and press Enter. Commands:
  /new            start a new conversation
  /history        list conversations;  /history ID  shows one and continues it
  /persona [P]    show the persona, or switch to persona P (id, name or folder)
  /help           this text
  /quit           leave (or Ctrl-D)
Ctrl-C while a reply is streaming stops that reply."""


def run_chat(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the chat loop until the user leaves."""
    out = out or sys.stdout
    persona = find_persona(args.persona)
    store = ConversationStore(paths.conversations_db())
    voice_out = pipeline = None
    try:
        conversation = args.conversation or (store.latest_conversation() if args.resume else None)
        if conversation is not None and conversation not in {c.id for c in store.conversations()}:
            raise TalkError(f"There is no conversation {conversation}.",
                            hint="List them with /history in the chat.",
                            code="conversation_not_found")
        backend = _open(persona, args, out)
        session = ChatSession(store, backend, persona.id, conversation)
        voice_out = voice_output(args, persona, out) if args.speak else None
        pipeline, printer = _pipeline(session, voice_out, out)
        if args.message:
            sent = [_send(pipeline, printer, message, echo_user=True)
                    for message in args.message]
            return 0 if all(sent) else 1
        print(f"Talking to {persona.label}. /help for commands, Ctrl-D to leave.", file=out)
        if session.history:
            _print_history(session, out)
        return _loop(pipeline, printer, args, out)
    finally:
        if pipeline is not None:
            pipeline.close()
        store.close()
        if voice_out is not None:
            voice_out[1].close()


def _open(persona: Persona, args: argparse.Namespace, out: TextIO):
    where = f"the server at {args.remote}" if args.remote else "this machine"
    print(f"Loading {persona.label} on {where}...", file=out, flush=True)
    from engine.models.loader import needs_conversion

    if needs_conversion(persona):
        print("First use: converting its GGUF weights to safetensors, once (about half a "
              "minute; ~0.5 GB in the data folder).", file=out, flush=True)
    started = time.perf_counter()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    backend = open_backend(persona, remote=args.remote, device=args.device,
                           api=args.remote_api, model=args.remote_model,
                           **decoding_overrides(args))
    device = getattr(backend, "device", None)
    detail = f" on {device}" if device else ""
    print(f"Ready in {time.perf_counter() - started:.1f} s{detail}.", file=out, flush=True)
    return backend


def voice_output(args: argparse.Namespace, persona: Persona, out: TextIO):
    """(tts, player, voice) for spoken replies, or None with the reason shown."""
    from engine.audio.player import Player
    from engine.tts.builtin import describe_voice, find_any_voice
    from engine.tts.pocket import PocketTTS

    try:
        from engine.voices.pairing import voice_for

        ref = args.voice or voice_for(persona)  # the persona's own voice unless told otherwise
        voice = find_any_voice(ref)
        tts = PocketTTS(args.tts_model, device=args.tts_device)
        voice = ready_voice(tts, voice, out)
        player = Player(args.speaker_device)
        player.start()
    except TalkError as err:
        print_error(err)
        print("Replies will be text only.", file=out)
        return None
    print(f"Replies are spoken in {describe_voice(voice)} ({tts.model_id}).", file=out)
    return tts, player, voice


def ready_voice(tts, voice, out: TextIO):
    """``voice``, its state loaded now rather than inside the first reply.

    An enrolled voice without the cloning weights gives way to the default built-in voice, and
    ``out`` says so.
    """
    from engine.tts.pocket import CloningUnavailableError

    try:
        tts.voice_state(voice)
    except CloningUnavailableError as err:
        print_error(err)
        print("Speaking in the default built-in voice (alba) instead.", file=out)
        voice = None
        tts.voice_state(voice)
    return voice


def _pipeline(session: ChatSession, voice_out, out: TextIO):
    """The pipeline typed turns go through (the window's path too), and its printer.

    With ``voice_out`` (tts, player, voice) replies are spoken as they stream; without, they are
    text. Either way each turn is stored with its timings.
    """
    from engine.cli.render import EventPrinter
    from engine.pipeline.turns import VoicePipeline

    tts, player, voice = voice_out or (None, None, None)
    printer = EventPrinter(out, timings=voice_out is not None)
    return VoicePipeline(session, tts=tts, player=player, voice=voice, on_event=printer), printer


def _loop(pipeline, printer, args: argparse.Namespace, out: TextIO) -> int:
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print(file=out)
            return 0
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if _command(pipeline.session, line, args, out) == "quit":
                return 0
            continue
        _send(pipeline, printer, line)


def _send(pipeline, printer, text: str, *, echo_user: bool = False) -> bool:
    """One typed turn, printed (and spoken) as it streams; False if it failed.

    Ctrl-C stops the reply; what was shown (or spoken) is kept, marked cut.
    """
    if echo_user:
        printer.echo_next(text)
    run = pipeline.start_text_turn(text)
    try:
        while not run.wait(0.1):
            pass
    except KeyboardInterrupt:
        run.stop("Ctrl-C")
        run.wait()
        return True
    return run.result.failed_stage is None


def _command(session: ChatSession, line: str, args: argparse.Namespace, out: TextIO) -> str:
    name, _, rest = line.partition(" ")
    rest = rest.strip()
    if name in ("/quit", "/exit", "/q"):
        return "quit"
    if name == "/help":
        print(HELP, file=out)
    elif name == "/new":
        session.new_conversation()
        print(f"New conversation ({session.conversation_id}).", file=out)
    elif name == "/history":
        _history_command(session, rest, out)
    elif name == "/persona":
        _persona_command(session, rest, args, out)
    else:
        print(f"Unknown command {name}. /help lists them.", file=out)
    return ""


def _history_command(session: ChatSession, rest: str, out: TextIO) -> None:
    store = session.store
    if not rest:
        for conv in store.conversations()[:30]:
            mark = "*" if conv.id == session.conversation_id else " "
            when = datetime.fromtimestamp(conv.updated).strftime("%Y-%m-%d %H:%M")
            title = conv.title or "(empty)"
            print(f"{mark}{conv.id:>4}  {when}  {conv.persona:<16} {title}", file=out)
        print("/history ID shows and continues a conversation.", file=out)
        return
    if not rest.isdigit() or int(rest) not in {c.id for c in store.conversations()}:
        print(f"No conversation {rest!r}. /history lists them.", file=out)
        return
    replacement = ChatSession(store, session.backend, session.persona_id, int(rest))
    session.conversation_id, session.history = replacement.conversation_id, replacement.history
    _print_history(session, out)


def _print_history(session: ChatSession, out: TextIO) -> None:
    for turn in session.store.turns(session.conversation_id):
        who = "you" if turn.role == "user" else "bot"
        when = datetime.fromtimestamp(turn.created).strftime("%H:%M")
        cut = " [cut]" if turn.status == "cut" else ""
        print(f"[{when}] {who}> {turn.text}{cut}", file=out)


def _persona_command(session: ChatSession, rest: str, args: argparse.Namespace,
                     out: TextIO) -> None:
    if not rest:
        print(f"Persona: {session.persona_id}", file=out)
        return
    try:
        persona = find_persona(rest)
        backend = _open(persona, args, out)
    except TalkError as err:
        print_error(err)
        return
    session.switch_backend(backend, persona.id)
    print(f"Now talking to {persona.label}.", file=out)
